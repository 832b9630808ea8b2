"""The IDX reader treats files as untrusted; MNIST and Fashion-MNIST load with their shapes."""

import gzip

import numpy as np
import pytest

from probprop.data.images import MAX_BYTES, find_images_dir, load_images, read_idx


def _idx(path, dims, payload, magic=b"\x00\x00\x08"):
    header = magic + bytes([len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    path.write_bytes(header + payload)
    return path


def test_a_good_file_round_trips_and_gzip_is_read(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain = _idx(tmp_path / "a-idx3-ubyte", data.shape, data.tobytes())
    np.testing.assert_array_equal(read_idx(plain), data)
    zipped = tmp_path / "a-idx3-ubyte.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_idx(zipped), data)


def test_bad_files_are_refused_before_allocating(tmp_path):
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(_idx(tmp_path / "f", (2,), b"\x00\x00", magic=b"\x00\x00\x0d"))  # float IDX
    with pytest.raises(ValueError, match="declares 6 bytes"):
        read_idx(_idx(tmp_path / "t", (2, 3), b"\x01\x02"))  # truncated
    with pytest.raises(ValueError, match="declares 7 bytes"):
        read_idx(_idx(tmp_path / "l", (7,), bytes(9)))  # trailing data
    with pytest.raises(ValueError, match=f"more than {MAX_BYTES}"):
        read_idx(_idx(tmp_path / "h", (60000, 60000, 60000), b""))  # a declared 2e14 bytes
    with pytest.raises(ValueError, match="truncated IDX header"):
        (tmp_path / "s").write_bytes(b"\x00\x00\x08\x03\x00")
        read_idx(tmp_path / "s")


def test_the_image_sets_load_with_their_shapes():
    try:
        find_images_dir("mnist")
    except FileNotFoundError:
        pytest.skip("no shared/data/mnist here")
    X, y, Xt, yt = load_images("mnist")
    assert X.shape == (60000, 28, 28) and Xt.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert np.bincount(y).tolist()[:3] == [5923, 6742, 5958]  # the published class counts
    X, y, Xt, yt = load_images("fashion-mnist", flat=True, scale=True)
    assert X.shape == (60000, 784) and 0 <= X.min() and X.max() == 1.0 and np.all(np.bincount(yt) == 1000)
    with pytest.raises(ValueError, match="unknown image set"):
        load_images("cifar")
