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


def test_random_shifts_move_each_image_whole_and_fill_with_zeros():
    from probprop.data.images import random_shifts

    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (300, 6, 5)).astype(np.uint8)  # no zero pixels: the fill is visible
    out = random_shifts(images, 2, np.random.default_rng(1), image_shape=(6, 5))
    assert out.shape == images.shape and out.dtype == images.dtype
    seen = set()
    for a, b in zip(images, out):
        # exactly one offset (dy, dx) in [-2, 2]^2 explains the output: b[i, j] = a[i - dy, j - dx], else 0
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                want = np.zeros_like(a)
                want[max(dy, 0):6 + min(dy, 0), max(dx, 0):5 + min(dx, 0)] = a[max(-dy, 0):6 - max(dy, 0),
                                                                               max(-dx, 0):5 - max(dx, 0)]
                if np.array_equal(b, want):
                    matches.append((dy, dx))
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 25  # every offset occurs among 300 images
    flat = random_shifts(images.reshape(300, 30), 2, np.random.default_rng(1), image_shape=(6, 5))
    np.testing.assert_array_equal(flat, out.reshape(300, 30))  # flat rows: the same draws, the same images
    np.testing.assert_array_equal(random_shifts(images, 0, 0, image_shape=(6, 5)), images)
    with pytest.raises(ValueError, match="max_shift"):
        random_shifts(images, -1, 0, image_shape=(6, 5))
    with pytest.raises(ValueError, match="images must be"):
        random_shifts(images.reshape(300, 30), 1, 0)  # 30 pixels are not 28 x 28
    with pytest.raises(ValueError, match="images must be"):
        random_shifts(images, 1, 0, image_shape=(5, 6))
    with pytest.raises(ValueError, match="max_shift"):
        random_shifts(images, 1.5, 0, image_shape=(6, 5))
    assert random_shifts(images[:0], 2, 0, image_shape=(6, 5)).shape == (0, 6, 5)
    # a numpy integer is taken; offsets past the image leave some images all zeros (padding bounded)
    far = random_shifts(images, np.int64(10**6), 0, image_shape=(6, 5))
    assert far.shape == images.shape and (far.reshape(300, -1).max(1) == 0).mean() > 0.99
