"""Published UCI-regression numbers, as data, with where each came from.

Every entry of :data:`PUBLISHED` is one method as printed by one source:

``label``
    short column header for reports;
``vs``
    a shorter name for "<method> vs <this>" headers;
``source``
    the source tag of ``shared/docs/pbp-reference.md`` §0 and the table it was read from;
``spread``
    what the printed ``±`` is: ``"se"`` (standard error over splits) or ``"sd"`` (standard
    deviation over splits; for DE-PAPER, NGBoost and TAGI-REPO this is inferred from the size
    of the values, the sources do not say);
``spread_inferred`` (optional)
    ``True`` where an ``"se"`` is inferred from the size of the values (DVI-PAPER);
``n_splits``
    the number of splits behind each value where the source's protocol states it (used to
    turn an SD into an SE, SE = SD / sqrt(n)), or ``None`` where it is not confirmed;
``decimals``
    how many decimals the source prints (a printed value is only known to half a unit of that);
``rmse`` / ``log_likelihood``
    ``{dataset: (value, spread)}``, datasets named as in :data:`probprop.data.DATASETS`
    (plus ``"year"``); ``spread`` is ``None`` where the source prints "NA".

Log-likelihoods are per test point, higher is better; sources that print NLL were sign-flipped
(noted per entry). :func:`with_se` gives the values with every spread expressed as an SE where
that is possible.

Which published entry is the counterpart of which benchmark method is data too:
:data:`PUBLISHED_FOR` maps a method of :data:`probprop.bench.methods.METHODS` to its published
entries, and :data:`PROTOCOL` says, for each such pair, whether the comparison is like-for-like
and what differs (:func:`pairing` looks one up).
"""

from __future__ import annotations

import math

__all__ = [
    "PAPER_PBP",
    "PAPER_RUNTIME_SECONDS",
    "PROTOCOL",
    "PUBLISHED",
    "PUBLISHED_FOR",
    "pairing",
    "spread_note",
    "with_se",
]

# The PBP protocol's split counts (DE-PAPER, GAL-PAPER): 20, protein 5, year 1.
_PBP_SPLITS = {
    "bostonHousing": 20,
    "concrete": 20,
    "energy": 20,
    "kin8nm": 20,
    "naval-propulsion-plant": 20,
    "power-plant": 20,
    "protein-tertiary-structure": 5,
    "wine-quality-red": 20,
    "yacht": 20,
    "year": 1,
}


def _dvi_paper(label: str, vs: str, source: str, log_likelihoods) -> dict:
    """A DVI-PAPER Table 2 column (LL only, 20 splits, ± read as SEs) from its nine values in
    the order of :data:`_PBP_SPLITS` (year excluded)."""
    names = [name for name in _PBP_SPLITS if name != "year"]
    return {
        "label": label,
        "vs": vs,
        "source": source,
        "spread": "se",
        "spread_inferred": True,  # DVI-PAPER does not say; the sizes look like SEs
        "n_splits": {name: 20 for name in names},
        "decimals": {"default": 2},
        "rmse": {},
        "log_likelihood": dict(zip(names, log_likelihoods, strict=True)),
    }

PUBLISHED: dict[str, dict] = {
    "pbp": {
        "label": "PBP (paper)",
        "vs": "paper",
        "source": "GAL-PAPER Table 1, copying Hernández-Lobato & Adams (ICML 2015); cross-checked with DE-PAPER Table 1",
        "spread": "se",
        "n_splits": _PBP_SPLITS,
        "decimals": {"default": 2, "year": 3},
        "rmse": {
            "bostonHousing": (3.01, 0.18),
            "concrete": (5.67, 0.09),
            "energy": (1.80, 0.05),
            "kin8nm": (0.10, 0.00),
            "naval-propulsion-plant": (0.01, 0.00),
            "power-plant": (4.12, 0.03),
            "protein-tertiary-structure": (4.73, 0.01),
            "wine-quality-red": (0.64, 0.01),
            "yacht": (1.02, 0.05),
            "year": (8.879, None),
        },
        "log_likelihood": {
            "bostonHousing": (-2.57, 0.09),
            "concrete": (-3.16, 0.02),
            "energy": (-2.04, 0.02),
            "kin8nm": (0.90, 0.01),
            "naval-propulsion-plant": (3.73, 0.01),
            "power-plant": (-2.84, 0.01),
            "protein-tertiary-structure": (-2.97, 0.00),
            "wine-quality-red": (-0.97, 0.01),
            "yacht": (-1.63, 0.02),
            "year": (-3.603, None),
        },
    },
    "vi": {
        "label": "VI (Graves)",
        "vs": "VI (paper)",
        "source": "GAL-PAPER Table 1 (VI column of the PBP paper)",
        "spread": "se",
        "n_splits": _PBP_SPLITS,
        "decimals": {"default": 2, "year": 3},
        "rmse": {
            "bostonHousing": (4.32, 0.29),
            "concrete": (7.19, 0.12),
            "energy": (2.65, 0.08),
            "kin8nm": (0.10, 0.00),
            "naval-propulsion-plant": (0.01, 0.00),
            "power-plant": (4.33, 0.04),
            "protein-tertiary-structure": (4.84, 0.03),
            "wine-quality-red": (0.65, 0.01),
            "yacht": (6.89, 0.67),
            "year": (9.034, None),
        },
        "log_likelihood": {
            "bostonHousing": (-2.90, 0.07),
            "concrete": (-3.39, 0.02),
            "energy": (-2.39, 0.03),
            "kin8nm": (0.90, 0.01),
            "naval-propulsion-plant": (3.73, 0.12),
            "power-plant": (-2.89, 0.01),
            "protein-tertiary-structure": (-2.99, 0.01),
            "wine-quality-red": (-0.98, 0.01),
            "yacht": (-3.43, 0.16),
            "year": (-3.622, None),
        },
    },
    "mc_dropout": {
        "label": "MC dropout (paper)",
        "vs": "GAL-PAPER",
        "source": "GAL-PAPER Table 1 ('Dropout', 1 hidden layer, BO-tuned; post-Oct-2016 SEs)",
        "spread": "se",
        "n_splits": _PBP_SPLITS,
        "decimals": {"default": 2, "year": 3},
        "rmse": {
            "bostonHousing": (2.97, 0.19),
            "concrete": (5.23, 0.12),
            "energy": (1.66, 0.04),
            "kin8nm": (0.10, 0.00),
            "naval-propulsion-plant": (0.01, 0.00),
            "power-plant": (4.02, 0.04),
            "protein-tertiary-structure": (4.36, 0.01),
            "wine-quality-red": (0.62, 0.01),
            "yacht": (1.11, 0.09),
            "year": (8.849, None),
        },
        "log_likelihood": {
            "bostonHousing": (-2.46, 0.06),
            "concrete": (-3.04, 0.02),
            "energy": (-1.99, 0.02),
            "kin8nm": (0.95, 0.01),
            "naval-propulsion-plant": (3.80, 0.01),
            "power-plant": (-2.80, 0.01),
            "protein-tertiary-structure": (-2.89, 0.00),
            "wine-quality-red": (-0.93, 0.01),
            "yacht": (-1.55, 0.03),
            "year": (-3.588, None),
        },
    },
    "mc_dropout_grid": {
        "label": "MC dropout grid (GAL-REPO)",
        "vs": "GAL-REPO grid",
        "source": "GAL-REPO readme.md (2018, 1 hidden layer, corrected grid-search protocol, 'grid' columns)",
        "spread": "se",
        "n_splits": {name: n for name, n in _PBP_SPLITS.items() if name != "year"},
        "decimals": {"default": 2},
        "rmse": {
            "bostonHousing": (2.90, 0.18),
            "concrete": (4.82, 0.16),
            "energy": (0.54, 0.06),
            "kin8nm": (0.08, 0.00),
            "naval-propulsion-plant": (0.00, 0.00),
            "power-plant": (4.01, 0.04),
            "protein-tertiary-structure": (4.27, 0.02),
            "wine-quality-red": (0.62, 0.01),
            "yacht": (0.67, 0.05),
        },
        "log_likelihood": {
            "bostonHousing": (-2.40, 0.04),
            "concrete": (-2.93, 0.02),
            "energy": (-1.21, 0.01),
            "kin8nm": (1.14, 0.01),
            "naval-propulsion-plant": (4.45, 0.00),
            "power-plant": (-2.80, 0.01),
            "protein-tertiary-structure": (-2.87, 0.00),
            "wine-quality-red": (-0.93, 0.01),
            "yacht": (-1.25, 0.01),
        },
    },
    "deep_ensembles": {
        "label": "Deep ens. (paper)",
        "vs": "DE-PAPER",
        "source": "DE-PAPER Table 1 (5 nets, heteroscedastic; NLL sign-flipped to LL)",
        "spread": "sd",
        "n_splits": _PBP_SPLITS,  # DE-PAPER: "the PBP protocol", 20 splits (protein 5, year 1)
        "decimals": {"default": 2},
        "rmse": {
            "bostonHousing": (3.28, 1.00),
            "concrete": (6.03, 0.58),
            "energy": (2.09, 0.29),
            "kin8nm": (0.09, 0.00),
            "naval-propulsion-plant": (0.00, 0.00),
            "power-plant": (4.11, 0.17),
            "protein-tertiary-structure": (4.71, 0.06),
            "wine-quality-red": (0.64, 0.04),
            "yacht": (1.58, 0.48),
            "year": (8.89, None),
        },
        "log_likelihood": {
            "bostonHousing": (-2.41, 0.25),
            "concrete": (-3.06, 0.18),
            "energy": (-1.38, 0.22),
            "kin8nm": (1.20, 0.02),
            "naval-propulsion-plant": (5.63, 0.05),
            "power-plant": (-2.79, 0.04),
            "protein-tertiary-structure": (-2.83, 0.02),
            "wine-quality-red": (-0.94, 0.12),
            "yacht": (-1.18, 0.21),
            "year": (-3.35, None),
        },
    },
    "ngboost": {
        "label": "NGBoost (paper)",
        "vs": "NGBoost paper",
        "source": "Duan et al. (ICML 2020) as re-printed in WGB-PAPER Table 1 (NLL sign-flipped to LL)",
        "spread": "sd",
        "n_splits": None,  # the split count is not confirmed by a readable source
        "decimals": {"default": 2},
        "rmse": {
            "bostonHousing": (2.94, 0.53),
            "concrete": (5.06, 0.61),
            "energy": (0.46, 0.06),
            "kin8nm": (0.16, 0.00),
            "naval-propulsion-plant": (0.00, 0.00),
            "power-plant": (3.79, 0.18),
            "protein-tertiary-structure": (4.33, 0.03),
            "wine-quality-red": (0.63, 0.04),
            "yacht": (0.50, 0.20),
        },
        "log_likelihood": {
            "bostonHousing": (-2.43, 0.15),
            "concrete": (-3.04, 0.17),
            "energy": (-0.60, 0.45),
            "kin8nm": (0.49, 0.02),
            "naval-propulsion-plant": (5.34, 0.04),
            "power-plant": (-2.79, 0.11),
            "protein-tertiary-structure": (-2.81, 0.03),
            "wine-quality-red": (-0.91, 0.06),
            "yacht": (-0.20, 0.26),
        },
    },
    "dvi": _dvi_paper(
        "DVI (paper, het.)",
        "DVI-PAPER DVI",
        "DVI-PAPER Table 2 (DVI, full covariance, heteroscedastic; ICLR 2019 review version; LL only)",
        [(-2.41, 0.02), (-3.06, 0.01), (-1.01, 0.06), (1.13, 0.00), (6.29, 0.04), (-2.80, 0.00), (-2.85, 0.01), (-0.90, 0.01), (-0.47, 0.03)],
    ),
    "ddvi": _dvi_paper(
        "dDVI (paper, het.)",
        "DVI-PAPER dDVI",
        "DVI-PAPER Table 2 (dDVI, diagonal, heteroscedastic; ICLR 2019 review version; LL only)",
        [(-2.42, 0.02), (-3.07, 0.02), (-1.06, 0.06), (1.13, 0.00), (6.22, 0.06), (-2.80, 0.00), (-2.84, 0.01), (-0.91, 0.02), (-0.47, 0.03)],
    ),
    "hodvi": _dvi_paper(
        "hoDVI (paper)",
        "DVI-PAPER hoDVI",
        "DVI-PAPER Table 2 (homoscedastic DVI; ICLR 2019 review version; LL only)",
        [(-2.58, 0.04), (-3.23, 0.01), (-2.09, 0.06), (1.01, 0.01), (5.84, 0.06), (-2.82, 0.00), (-2.94, 0.00), (-0.96, 0.01), (-1.41, 0.03)],
    ),
    "tagi": {
        "label": "TAGI (re-run)",
        "vs": "TAGI-REPO re-run",
        "source": "TAGI-REPO benchmarks/README.md (pytagi re-run, homoscedastic; not the JMLR table)",
        "spread": "sd",
        # the README states 20 splits; whether protein also used 20 is not confirmed
        "n_splits": {
            name: 20 for name in _PBP_SPLITS if name not in ("year", "protein-tertiary-structure")
        },
        "decimals": {"default": 3},
        "rmse": {
            "bostonHousing": (3.146, 0.910),
            "concrete": (5.865, 0.518),
            "energy": (1.317, 0.221),
            "kin8nm": (0.095, 0.004),
            "naval-propulsion-plant": (0.007, 0.000),
            "power-plant": (4.129, 0.153),
            "protein-tertiary-structure": (4.615, 0.024),
            "wine-quality-red": (0.639, 0.035),
            "yacht": (1.037, 0.280),
        },
        "log_likelihood": {
            "bostonHousing": (-2.578, 0.327),
            "concrete": (-3.204, 0.109),
            "energy": (-1.808, 0.284),
            "kin8nm": (0.893, 0.060),
            "naval-propulsion-plant": (3.540, 0.037),
            "power-plant": (-2.879, 0.054),
            "protein-tertiary-structure": (-2.954, 0.006),
            "wine-quality-red": (-0.975, 0.066),
            "yacht": (-1.597, 0.115),
        },
    },
    "sep_paper": {
        "label": "SEP (SEP paper)",
        "vs": "the SEP paper",
        "source": "Li, Hernández-Lobato & Turner, Stochastic Expectation Propagation (NIPS 2015), PBP "
        "with 100 hidden units, as quoted in issue 14 (ADF / SEP test LL: kin8nm 0.896 / 1.013, naval "
        "3.731 / 4.590, protein -2.973 / -2.961); no spread quoted",
        "spread": "se",
        "n_splits": None,
        "decimals": {"default": 3},
        "rmse": {},
        "log_likelihood": {
            "kin8nm": (1.013, None),
            "naval-propulsion-plant": (4.590, None),
            "protein-tertiary-structure": (-2.961, None),
        },
    },
    "sep_paper_adf": {
        "label": "ADF (SEP paper)",
        "vs": "the SEP paper's ADF",
        "source": "the same table's ADF (PBP) column",
        "spread": "se",
        "n_splits": None,
        "decimals": {"default": 3},
        "rmse": {},
        "log_likelihood": {
            "kin8nm": (0.896, None),
            "naval-propulsion-plant": (3.731, None),
            "protein-tertiary-structure": (-2.973, None),
        },
    },
}

#: Shortcut to the numbers a faithful PBP reimplementation should reproduce.
PAPER_PBP = PUBLISHED["pbp"]

#: PBP fit time per split (Theano implementation), the only two quoted (GAL-PAPER §5.3).
PAPER_RUNTIME_SECONDS = {
    "source": "GAL-PAPER §5.3 (PBP, Theano implementation, seconds per split)",
    "values": {"kin8nm": 156.0, "naval-propulsion-plant": 220.0},
}


#: Published counterparts of each benchmark method (keys of :data:`PUBLISHED`), in column order.
#: A report shows a published column only when one of its methods is in the run. ``dvi`` is the
#: homoscedastic head (hoDVI), ``dvi-het`` the heteroscedastic one (DVI-PAPER's DVI and dDVI;
#: probprop implements the diagonal dDVI). Methods without an entry (``pbp2``, ``pbp-ensemble``,
#: ``map``, ``bayesridge``) have no published counterpart.
PUBLISHED_FOR: dict[str, list[str]] = {
    "pbp": ["pbp"],
    "pbp-refscale": ["pbp"],
    "pbp-sep": ["sep_paper", "sep_paper_adf"],
    "mcdropout": ["mc_dropout", "mc_dropout_grid"],
    "ensemble": ["deep_ensembles"],
    "ensemble-select": ["deep_ensembles"],
    "ngboost": ["ngboost"],
    "dvi": ["hodvi"],
    "dvi-het": ["ddvi", "dvi"],
    "tagi": ["tagi"],
    "pytagi": ["tagi"],
}

_DVI_SPLITS = (
    "DVI-PAPER used its own 20 random 90/10 splits (not stated to be the PBP splits) and its own "
    "training budget; its ± look like SEs"
)
_TAGI_RERUN = (
    "TAGI-REPO's benchmarks/README.md is a pytagi re-run, not the JMLR table: its own 20 splits, "
    "epochs chosen by early stopping on a 90/10 train/validation split and results averaged over "
    "5 seeds, sigma_v grid-searched per dataset, batch 10 (yacht 5); its ± look like SDs (converted "
    "with 20 splits; protein left as SD)"
)

#: For each (benchmark method, published entry) of :data:`PUBLISHED_FOR`: is the comparison
#: like-for-like (same splits, architecture, training budget and scoring, up to the number of
#: splits run), and a note on what differs or what is assumed. A verdict (within two combined SEs,
#: better, worse) is only stated for like-for-like pairs; the others are context.
PROTOCOL: dict[tuple[str, str], dict] = {
    ("pbp", "pbp"): {
        "like_for_like": True,
        "note": "same protocol: the PBP splits, one hidden layer of 50 ReLU units (100 for protein), "
        "n_epochs.txt epochs (40; 20 for protein), no tuning. Naval: an input column's training std "
        "is rounding noise (~1e-13); probprop treats it as constant, the reference code divides by "
        "it and so feeds a second constant input; with the reference scaling (`pbp-refscale`, "
        "docs/benchmarks/naval-scaling) the naval LL is within the paper's error bars",
    },
    ("pbp-refscale", "pbp"): {
        "like_for_like": True,
        "note": "the paper's protocol with the reference code's input scaling (only exactly constant "
        "columns left unscaled), i.e. the scaling the paper's own code used",
    },
    ("pbp-sep", "sep_paper"): {
        "like_for_like": False,
        "note": "the SEP paper ran PBP with 100 hidden units on every dataset (probprop: the PBP protocol, "
        "50; 100 for protein), with its own splits, epochs and seeds not stated in the quote, and no "
        "spread is quoted: context only",
    },
    ("pbp-sep", "sep_paper_adf"): {
        "like_for_like": False,
        "note": "the SEP paper's ADF column beside its SEP column: how much SEP gained there (context)",
    },
    ("mcdropout", "mc_dropout"): {
        "like_for_like": False,
        "note": "GAL-PAPER's 'Dropout' column trained 400 epochs (40 × 10) with dropout rate and tau "
        "tuned by Bayesian optimisation (a tuning GAL-REPO later found to leak test data across "
        "splits) and scored LL with T = 10,000 passes; the benchmark trains the protocol's epochs "
        "(4000 on the small datasets, 400 on the large ones) with GAL-REPO's grid search",
    },
    ("mcdropout", "mc_dropout_grid"): {
        "like_for_like": False,
        "note": "GAL-REPO's corrected protocol, replayed: the PBP splits, per-split 80/20 grid search "
        "over dropout_rates.txt × tau_values.txt, 4000 epochs (its result files say 100× the 40-epoch "
        "base) on the five small datasets but only 400 (10×) on kin8nm, naval, power and protein "
        "(compute); LL from T = 100 passes where GAL-REPO used 10,000",
    },
    ("ensemble", "deep_ensembles"): {
        "like_for_like": True,
        "note": "DE-PAPER follows the PBP protocol (splits, 1×50 / 1×100, 40 epochs, 5 "
        "heteroscedastic nets); its ± are taken to be SDs and converted with 20 splits (protein 5); "
        "whether its Table 1 used adversarial training is not stated (probprop's is off by default) "
        "and its optimiser settings are not stated either: the adapter uses Adam at a fixed step size "
        "1e-2, batch 32, and the LL depends on that choice: `ensemble-select`, which picks the step "
        "size on a validation split of the training data, is compared with it in "
        "docs/benchmarks/ensemble-select",
    },
    ("ensemble-select", "deep_ensembles"): {
        "like_for_like": True,
        "note": "as for `ensemble`, with Adam's step size chosen per split from 1e-3, 3e-3, 1e-2, 3e-2 "
        "by validation LL on an 80/20 split of the training data (never the test split), because "
        "DE-PAPER does not state its optimiser settings",
    },
    ("ngboost", "ngboost"): {
        "like_for_like": False,
        "note": "Duan et al.'s numbers as re-printed in WGB-PAPER (not checked against the NGBoost "
        "paper); their splits, split count and tuning are not confirmed, and the ± are SDs over an "
        "unknown number of splits, so no combined SE can be formed; the benchmark runs NGBoost's defaults",
    },
    ("dvi", "hodvi"): {
        "like_for_like": False,
        "note": _DVI_SPLITS + "; hoDVI is the homoscedastic variant (diagonal or full covariance not stated)",
    },
    ("dvi-het", "ddvi"): {
        "like_for_like": False,
        "note": _DVI_SPLITS + "; dDVI is the diagonal heteroscedastic variant, as probprop's",
    },
    ("dvi-het", "dvi"): {
        "like_for_like": False,
        "note": _DVI_SPLITS + "; full-covariance DVI, while probprop implements the diagonal dDVI",
    },
    ("tagi", "tagi"): {
        "like_for_like": False,
        "note": _TAGI_RERUN + "; probprop's TAGI trains the protocol's epochs on the PBP splits",
    },
    ("pytagi", "tagi"): {
        "like_for_like": False,
        "note": _TAGI_RERUN + "; same library, but the benchmark does not replay its early stopping, "
        "seed averaging or splits: the pytagi adapter follows the `tagi` adapter's protocol (PBP "
        "splits, n_epochs.txt epochs, batch 10, sigma_v from 0.1-0.7 on a validation tenth) with "
        "pytagi's MixtureReLU, its He initialisation and float32",
    },
}


def pairing(method: str, source: str) -> dict:
    """``{"like_for_like", "note"}`` for a benchmark method against a published entry.

    A pair missing from :data:`PROTOCOL` is not like-for-like ("protocol not checked").
    """
    return PROTOCOL.get((method, source), {"like_for_like": False, "note": "protocol not checked"})


def with_se(method: str, metric: str, dataset: str) -> dict | None:
    """One published value with its spread expressed as an SE where possible.

    Returns ``None`` if the source has no value for that dataset, else a dict with
    ``value``, ``se`` (``None`` if the source prints NA, or prints an SD over an unknown
    number of splits), ``printed`` (the printed ``±``), ``kind`` (``"se"``, ``"sd->se"``
    for a converted SD, ``"sd"`` for an unconverted one, or ``"na"``), ``n_splits`` and
    ``resolution`` (half a unit in the last printed decimal).
    """
    entry = PUBLISHED[method]
    pair = entry[metric].get(dataset)
    if pair is None:
        return None
    value, printed = pair
    decimals = entry["decimals"].get(dataset, entry["decimals"]["default"])
    n_splits = (entry["n_splits"] or {}).get(dataset)
    if printed is None:
        se, kind = None, "na"
    elif entry["spread"] == "se":
        se, kind = printed, "se"
    elif n_splits:
        se, kind = printed / math.sqrt(n_splits), "sd->se"
    else:
        se, kind = None, "sd"
    return {
        "value": value,
        "se": se,
        "printed": printed,
        "kind": kind,
        "n_splits": n_splits,
        "resolution": 0.5 * 10.0 ** (-decimals),
        "decimals": decimals,
    }


def spread_note(keys=None) -> str:
    """Markdown paragraph on SE vs SD for the sources in :data:`PUBLISHED` (or only ``keys``)."""
    lines = []
    for key, entry in PUBLISHED.items():
        if keys is not None and key not in keys:
            continue
        if entry["spread"] == "se" and entry.get("spread_inferred"):
            what = (
                "prints values whose size suggests standard errors over splits (the source does "
                "not say); shown as printed"
            )
        elif entry["spread"] == "se":
            what = "prints standard errors over splits; shown as printed"
        elif entry["n_splits"]:
            missing = sorted(set(entry["rmse"]) | set(entry["log_likelihood"]))
            missing = [d for d in missing if d not in entry["n_splits"]]
            what = (
                "prints values whose size suggests standard deviations over splits (the source "
                "does not say); converted here to standard errors, SE = SD / sqrt(n_splits)"
            )
            if missing:
                what += f" (not converted, split count unknown: {', '.join(missing)}; marked 'SD')"
        else:
            what = (
                "prints values whose size suggests standard deviations over splits, and its split "
                "count is not confirmed, so they are shown unconverted and marked 'SD'"
            )
        lines.append(f"- **{entry['label']}** ({entry['source']}): {what}.")
    return "\n".join(lines)
