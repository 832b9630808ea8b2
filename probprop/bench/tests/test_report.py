"""The UCI benchmark report on a constructed results frame (no fitting, a few seconds)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from probprop.bench import figures, published, report, stats

# Per (method, dataset): (mean test LL, mean RMSE). Every cell gets three splits, mean ± DELTA,
# so that SE = DELTA / sqrt(3). The paper's PBP: LL yacht -1.63 ± 0.02, concrete -3.16 ± 0.02,
# Boston -2.57 ± 0.09; RMSE yacht 1.02 ± 0.05, Boston 3.01 ± 0.18.
CELLS = {
    "pbp": {"yacht": (-1.62, 1.00), "concrete": (-3.30, 5.60), "bostonHousing": (-2.80, 2.40)},
    "pbp2": {"yacht": (-1.70, 0.60), "concrete": (-3.15, 5.50), "bostonHousing": (-2.90, 3.10)},
    "ensemble": {"yacht": (-1.20, 0.80), "concrete": (-3.40, 5.90), "bostonHousing": (-2.75, 3.20)},
    "tagi": {"yacht": (-1.62, 1.00), "concrete": (-3.30, 5.60), "bostonHousing": (-2.80, 2.40)},
    # an external baseline that would win everything if it were ranked with probprop's configurations
    "bayesridge": {"yacht": (-1.00, 0.10), "concrete": (-1.00, 0.10), "bostonHousing": (-1.00, 0.10)},
}
DELTA = {"yacht": 0.01, "concrete": 0.01, "bostonHousing": 0.03}
RMSE_DELTA = 0.05


def _frame() -> pd.DataFrame:
    rows = []
    for method, cells in CELLS.items():
        for dataset, (ll, rmse) in cells.items():
            for k, sign in enumerate((-1, 0, 1)):
                rows.append({
                    "method": method, "dataset": dataset, "split": k,
                    "log_likelihood": ll + sign * DELTA[dataset],
                    "rmse": rmse + sign * RMSE_DELTA,
                    "crps": rmse / 2 + 0.01 * k,
                    "coverage_90": 0.85 + 0.01 * k + (0.04 if method == "pbp2" else 0.0),
                    "fit_seconds": 2.0 + k,
                })
    return pd.DataFrame(rows)


META = {
    "wall_seconds": 123.4,
    "command": "probprop bench uci (synthetic)",
    "workers": 2,
    "n_tasks": 45,
    "machine": {"cpu": "test cpu", "logical_cores": 2, "usable_cores": 2, "platform": "test", "python": "3"},
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = report.write_report(_frame(), out, META)
    return out, path.read_text()


def _section(text: str, heading: str) -> str:
    """The text from ``heading`` (a markdown heading line) to the next heading of any level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and heading in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start + 1:end])


def _table(section: str) -> list[dict]:
    """The first markdown table of a section, as a list of {header: cell}."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    header = split(rows[0])
    return [dict(zip(header, split(line))) for line in rows[2:]]


def test_report_has_every_table_and_plot(written):
    out, text = written
    for heading in ("## Against published numbers", "## Best method per dataset", "## Test RMSE",
                    "## Test log-likelihood per point", "## CRPS", "## Coverage of the central 90 % interval",
                    "## Fit time per split", "### Test RMSE: ours against published",
                    "### Test log-likelihood: ours against published", "## Published numbers: SE or SD?"):
        assert heading in text, heading
    assert "Total wall time: **123.4 s**" in text
    for name in ("ll_comparison.png", "rmse_comparison.png"):
        assert f"]({name})" in text and (out / name).read_bytes()[:4] == b"\x89PNG"

    ll = _table(_section(text, "## Test log-likelihood per point"))
    assert [row["dataset"] for row in ll] == ["Boston", "Concrete", "Yacht"]  # the papers' order
    for method in CELLS:
        assert stats.label(method) in ll[0], method  # columns labelled with LABELS
    yacht = next(row for row in ll if row["dataset"] == "Yacht")
    assert yacht["splits"] == "3"
    se = DELTA["yacht"] / math.sqrt(3)
    assert yacht["probprop PBP"] == report.fmt(-1.62, se)
    assert yacht["PBP (paper)"] == "-1.63 ± 0.02"
    assert yacht["TAGI (re-run)"].startswith("-1.597 ± ")  # SD converted to SE (20 splits)
    assert yacht["TAGI (re-run)"].endswith("†")

    fit = _table(_section(text, "## Fit time per split"))
    assert fit[0]["probprop PBP"] == report.fmt(3.0, 1 / math.sqrt(3))
    assert "PBP paper (Theano)" in fit[0]
    coverage = _table(_section(text, "## Coverage of the central 90 % interval"))
    assert coverage[0]["probprop PBP, 2 hidden layers"].startswith("**")  # closest to 0.90


def test_published_columns_only_for_methods_in_the_run(written):
    _, text = written
    ll = _section(text, "## Test log-likelihood per point")
    header = _table(ll)[0].keys()
    assert {"PBP (paper)", "Deep ens. (paper)", "TAGI (re-run)"} <= set(header)
    for absent in ("MC dropout (paper)", "MC dropout grid (GAL-REPO)", "NGBoost (paper)", "hoDVI (paper)",
                   "DVI (paper, het.)"):
        assert absent not in header and f"**{absent}**" not in text
    assert "**PBP (paper)**" in _section(text, "## Published numbers: SE or SD?")  # SE/SD note per shown source


def test_best_method_per_dataset_and_count_line(written):
    _, text = written
    section = _section(text, "## Best method per dataset")
    best = {row["dataset"]: row for row in _table(section)}
    # BayesianRidge has the best numbers everywhere but is an external baseline, not ranked
    assert best["Yacht"]["best by test LL"] == stats.label("ensemble")
    assert best["Yacht"]["test LL"] == report.fmt(-1.20, DELTA["yacht"] / math.sqrt(3))
    assert best["Yacht"]["best by RMSE"] == stats.label("pbp2")
    assert best["Yacht"]["RMSE"] == report.fmt(0.60, RMSE_DELTA / math.sqrt(3))
    assert best["Concrete"]["best by test LL"] == stats.label("pbp2")
    assert best["Boston"]["best by test LL"] == stats.label("ensemble")
    assert best["Boston"]["best by RMSE"] == stats.label("pbp")
    assert best["Boston"]["best LL − paper PBP"].startswith("lower")
    assert best["Yacht"]["best LL − paper PBP"].startswith("higher") and "> 2 SE" in best["Yacht"]["best LL − paper PBP"]
    assert "within 2 SE" in best["Concrete"]["best LL − paper PBP"]
    assert best["Yacht"]["best external baseline (test LL)"].startswith("BayesianRidge")
    # yacht: clearly higher; concrete: higher but within two combined SEs; Boston: lower
    assert ("**Best probprop configuration vs the paper's PBP (test LL):** a higher mean test LL on **2 of 3** "
            "datasets; better by more than two combined SEs on 1 of 3.") in section
    assert ("- probprop PBP: higher mean test LL than the paper's PBP on 1 of 3 datasets "
            "(0 by more than two combined SEs).") in section


def test_verdicts_for_a_constructed_case(written):
    _, text = written
    ll = {row["dataset"]: row for row in _table(_section(text, "### Test log-likelihood: ours against published"))}
    rmse = {row["dataset"]: row for row in _table(_section(text, "### Test RMSE: ours against published"))}
    pbp = next(h for h in ll["Yacht"] if h.startswith("probprop PBP vs paper"))
    assert ll["Yacht"][pbp].startswith("within 2 SE")  # -1.62 vs -1.63 ± 0.02
    # concrete: -3.30 vs -3.16 ± 0.02; combined SE = sqrt((0.01/sqrt 3)² + 0.02²)
    z = -0.14 / math.hypot(0.01 / math.sqrt(3), 0.02)
    assert ll["Concrete"][pbp] == f"**worse ({z:+.1f} SE)**".replace("-", "−")
    assert ll["Boston"][pbp].startswith("**worse")  # -2.80 vs -2.57 ± 0.09
    assert rmse["Boston"][pbp].startswith("better (+")  # 2.40 vs 3.01 ± 0.18
    assert rmse["Yacht"][pbp].startswith("within 2 SE")  # 1.00 vs 1.02 ± 0.05
    # deep ensembles: like-for-like, -1.20 vs -1.18 ± 0.21 SD over 20 splits
    de = next(h for h in ll["Yacht"] if h.startswith(stats.label("ensemble") + " vs DE-PAPER"))
    assert ll["Yacht"][de].startswith("within 2 SE")
    # TAGI's published numbers are a re-run with another protocol: context only, never a verdict
    tagi = next(h for h in ll["Yacht"] if h.startswith("probprop TAGI vs"))
    assert all(ll[d][tagi].startswith("context: ") for d in ll)
    section = _section(text, "## Against published numbers")
    assert ("- probprop PBP vs paper: RMSE within two combined SEs or better on 3 of 3 datasets "
            "(better on Boston)") in section
    assert "test LL within two combined SEs or better on 1 of 3 datasets (worse on Boston, Concrete)" in section
    assert "Not like-for-like, shown as context only: probprop TAGI vs TAGI-REPO re-run" in section
    notes = text[text.index("Notes on the pairs:"):]
    assert "(not like-for-like, context only)" in notes and "early stopping" in notes


def test_epochs_override_makes_every_pair_context_only():
    lines = report._published_section(_frame(), epochs_override=3)
    text = "\n".join(lines)
    assert "Epochs were overridden to 3" in text
    assert "better (" not in text and "within 2 SE (" not in text and "worse (" not in text
    assert "context only in this run" in text


def test_compare_to_published_sources():
    # MC dropout (GAL-PAPER) yacht LL -1.55 ± 0.03
    assert stats.compare_to_published(-1.40, 0.01, "log_likelihood", "yacht", "mc_dropout")["verdict"] == "better"
    assert stats.compare_to_published(-1.56, 0.01, "log_likelihood", "yacht", "mc_dropout")["verdict"] == "within"
    # NGBoost prints SDs over an unknown number of splits: no combined SE, no verdict
    v = stats.compare_to_published(-0.5, 0.05, "log_likelihood", "yacht", "ngboost")
    assert v["verdict"] is None and math.isclose(v["gain"], -0.30)
    assert stats.compare_to_published(1.0, 0.1, "rmse", "yacht", "hodvi") is None  # LL only


def test_published_mapping_is_consistent():
    for method, sources in published.PUBLISHED_FOR.items():
        for source in sources:
            assert source in published.PUBLISHED, source
            info = published.pairing(method, source)
            assert (method, source) in published.PROTOCOL and info["note"]
            assert isinstance(info["like_for_like"], bool)
    assert published.pairing("pbp", "pbp")["like_for_like"]
    for pair in (("mcdropout", "mc_dropout"), ("mcdropout", "mc_dropout_grid"), ("dvi", "hodvi"),
                 ("dvi-het", "dvi"), ("tagi", "tagi")):
        assert not published.pairing(*pair)["like_for_like"], pair
    assert published.pairing("map", "pbp") == {"like_for_like": False, "note": "protocol not checked"}
    grid = published.with_se("mc_dropout_grid", "log_likelihood", "energy")
    assert grid["value"] == -1.21 and grid["kind"] == "se"
    assert published.with_se("dvi", "log_likelihood", "naval-propulsion-plant")["value"] == 6.29


def test_plot_handles_many_methods(tmp_path):
    frame = _frame()
    many = pd.concat([frame.assign(method=frame["method"] + f"-{i}") for i in range(3)] + [frame])
    fig = figures.plot_comparison(many, "log_likelihood", tmp_path / "ll.png")
    assert (tmp_path / "ll.png").read_bytes()[:4] == b"\x89PNG"
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 20 + 3  # 20 methods, then the PBP, deep-ensembles and TAGI published rows
    assert labels[-3:] == ["PBP (paper)", "Deep ens. (paper)", "TAGI (re-run)"]
    assert figures.plot_comparison(frame.iloc[:0], "rmse", tmp_path / "none.png") is None


# --------------------------------------------------------------------------------------
# Deeper PBP against the original C code's per-split numbers (probprop/bench/reference.py)
# --------------------------------------------------------------------------------------


def _deep_frame() -> pd.DataFrame:
    """pbp2 on yacht: the original's numbers with split 3's RMSE 2.5x and every LL 0.01 higher
    (a paired difference with SE 0: 'better'); pbp2-single equal except split 0 (LL 1e-6 off)."""
    from probprop.bench.reference import load_reference

    ref = load_reference()
    ref = ref[(ref["dataset"] == "yacht") & (ref["hidden"] == "50-50")]
    rows = []
    for _, r in ref.iterrows():
        k = int(r["split"])
        base = {"dataset": "yacht", "split": k, "n_hidden": 50, "crps": 0.5, "coverage_90": 0.9, "fit_seconds": 1.0}
        rmse = r["rmse"] * (2.5 if k == 3 else 1.0)
        rows.append(base | {"method": "pbp2", "rmse": rmse, "log_likelihood": r["test_ll"] + 0.01, "fitted_together": 5})
        rows.append(base | {"method": "pbp2-single", "rmse": rmse, "fitted_together": 1,
                            "log_likelihood": r["test_ll"] + 0.01 + (1e-6 if k == 0 else 0.0)})
    return pd.DataFrame(rows)


def test_deep_pbp_is_paired_with_the_original_code_split_by_split():
    from probprop.bench.reference import batched_against_single, paired_against_reference

    frame = _deep_frame()
    paired = {(r["method"], r["dataset"]): r for r in paired_against_reference(frame)}
    row = paired[("pbp2", "yacht")]
    assert row["n"] == 20 and row["hidden"] == "50-50"
    assert row["ll_diff"] == pytest.approx(0.01) and row["verdict"] == "better"
    assert row["worst_split"] == 3 and row["worst_ratio"] == pytest.approx(2.5) and row["far_off"] == 1
    assert row["ll_ref"] == pytest.approx(-1.77528, abs=1e-4)  # the original's mean, as in issue 18
    # the original's spread over seed sets: seed = split is one of them
    assert len(row["seed_lls"]) >= 2 and min(row["seed_lls"]) <= row["ll_ref"] <= max(row["seed_lls"])
    # a method or a width the reference does not cover is left out
    assert paired_against_reference(frame.assign(n_hidden=100)) == []
    assert paired_against_reference(frame.assign(method="pbp")) == []
    (batched,) = batched_against_single(frame)
    assert batched["method"] == "pbp2" and batched["n"] == 20
    assert batched["max_ll_diff"] == pytest.approx(1e-6) and batched["max_rmse_rel"] == 0.0
    # not batched: nothing to compare
    assert batched_against_single(frame.assign(fitted_together=1)) == []


def test_report_has_the_original_code_sections(tmp_path):
    text = report.write_report(_deep_frame(), tmp_path, META).read_text()
    rows = {r["method"]: r for r in _table(_section(text, "Against the original C code"))}
    assert set(rows) == {stats.label("pbp2"), stats.label("pbp2-single")}
    row = rows[stats.label("pbp2")]
    assert row["paired test LL difference"].endswith("(better)") and row["far off"] == "1"
    assert row["largest RMSE ratio"] == "2.50 (split 3)"
    assert "seed sets" in row["original's test LL, other seeds"]
    (row,) = _table(_section(text, "Fitted together against one split at a time"))
    assert row["largest absolute test LL difference"] == "1.00e-06"


def test_heteroscedastic_section_counts_verdicts_and_coverage():
    """Constructed splits: on A the heteroscedastic LL is 1.0 higher (SEs 0.115 each: +6.1 combined SEs),
    on B equal; coverage 0.9 on A (in band) and 0.7 on B (not)."""
    rows = []
    for dataset, shift, coverage in (("yacht", 1.0, 0.9), ("energy", 0.0, 0.7)):
        for split in range(4):
            jitter = 0.2 if split % 2 else -0.2  # SD 0.23, SE 0.115 over 4 splits
            rows.append({"method": "pbp", "dataset": dataset, "split": split, "log_likelihood": -2.0 + jitter,
                         "coverage_90": 0.9})
            rows.append({"method": "pbp-het", "dataset": dataset, "split": split,
                         "log_likelihood": -2.0 + shift + jitter, "coverage_90": coverage})
    lines = report._heteroscedastic_section(pd.DataFrame(rows))
    text = "\n".join(lines)
    assert "Better by more than two combined SEs on 1 of 2 datasets; 90 % coverage in band on 1 of 2." in text
    assert "| Yacht | +1.000 | +6.1 SE | better | 0.900 | yes |" in text
    assert "| Energy | +0.000 | +0.0 SE | within | 0.700 | **no** |" in text
    assert report._heteroscedastic_section(pd.DataFrame([r for r in rows if r["method"] == "pbp"])) == []


def test_mean_se_and_the_paired_difference_against_hand_computed_values():
    a = pd.Series([1.0, 2.0, 4.0], index=[0, 1, 2])
    b = pd.Series([0.5, 1.0, 4.5], index=[0, 1, 2])
    mean, se = stats.mean_se(a)
    assert mean == pytest.approx(7 / 3) and se == pytest.approx(math.sqrt(7 / 3 / 3))
    assert math.isnan(stats.mean_se([3.0])[1])
    # paired: the SE of the split-by-split difference (0.5, 1.0, -0.5)
    diff, se, note = stats.paired_difference(a, b)
    assert (diff, note) == (pytest.approx(1 / 3), "") and se == pytest.approx(math.sqrt(0.583333333 / 3), rel=1e-6)
    # different splits: the combined SE of the two means, and said so
    diff, se, note = stats.paired_difference(a, b.set_axis([0, 1, 3]))
    assert note == "unpaired"
    assert se == pytest.approx(math.hypot(stats.mean_se(a)[1], stats.mean_se(b)[1]))
    # the combined rule on the same splits: means 7/3 and 2, SEs sqrt(7/9) and sqrt(19/12) (hand values)
    diff, se = stats.combined_difference(a, b)
    assert diff == pytest.approx(1 / 3) and se == pytest.approx(math.sqrt(7 / 9 + 19 / 12))
    assert math.isnan(stats.combined_difference([1.0], [2.0, 3.0])[1])  # one split: no SE
    assert [stats.verdict(z) for z in (2.5, 1.9, -2.1, math.nan)] == ["better", "within", "worse", "n/a"]


def test_fmt_prints_a_diverged_mean_in_scientific_notation():
    assert report.fmt(8.4e73, 8.4e73) == "8.40e+73 ± 8.40e+73"
    assert report.fmt(1.2345, 0.0123) == "1.234 ± 0.012"
    assert report.fmt(2.5e6, math.nan) == "2.50e+06"
