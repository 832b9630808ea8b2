"""
Calibration on a UCI dataset, before and after quantile recalibration
=====================================================================

PBP on the yacht dataset (one of its standard splits) is underconfident: its intervals are too
wide. The calibration curve shows the fraction of test targets inside each central interval
against the interval's mass; quantile recalibration
(:class:`probprop.calibration.QuantileRecalibratedRegressor`) fitted on a fifth of the training
split brings it to the diagonal. The UCI files are read from ``shared/data/uci`` (see
:func:`probprop.data.load_uci`).
"""

import matplotlib.pyplot as plt
import numpy as np

from probprop import PBPRegressor, QuantileRecalibratedRegressor
from probprop.data import load_uci
from probprop.metrics import miscalibration_area
from probprop.metrics.general import pit_calibration_curve, pit_miscalibration_area

X_train, y_train, X_test, y_test = load_uci("yacht").split(0)
plain = PBPRegressor(epochs=40, random_state=0).fit(X_train, y_train)
recalibrated = QuantileRecalibratedRegressor(PBPRegressor(epochs=40, random_state=0), random_state=0)
recalibrated.fit(X_train, y_train)

before = plain.predict_dist(X_test)
after = recalibrated.predict_dist(X_test)
fig, ax = plt.subplots(figsize=(5, 5))
for dist, name in ((before, "PBP"), (after, "PBP, recalibrated")):
    expected, observed = pit_calibration_curve(dist.cdf(y_test))
    ax.plot(np.r_[0, expected, 1], np.r_[0, observed, 1], label=f"{name}: area {pit_miscalibration_area(dist.cdf(y_test)):.3f}")
ax.plot([0, 1], [0, 1], "k--", lw=0.8)
ax.set_xlabel("mass of the central interval")
ax.set_ylabel("fraction of test targets inside")
ax.legend(loc="upper left")
fig.tight_layout()

# %%
# The recalibrated distribution is a distribution: its intervals, quantiles and density agree.
print(f"miscalibration area: {miscalibration_area(y_test, before.mean, before.std):.3f} -> "
      f"{pit_miscalibration_area(after.cdf(y_test)):.3f}")
print(f"test log-likelihood: {before.logpdf(y_test).mean():.3f} -> {after.logpdf(y_test).mean():.3f}")
lower, upper = after.interval(0.9)
print(f"90 % coverage: {np.mean((lower <= y_test) & (y_test <= upper)):.3f}")
