"""
Intervals with a guarantee: split conformal prediction
======================================================

A model with the wrong noise model gives intervals of the wrong width. Split conformal prediction
(:class:`probprop.calibration.ConformalRegressor`) holds out a fifth of the training data and
widens or narrows the intervals so that, on exchangeable data, a 90 % interval covers at least
90 % of new targets, whatever the model.
"""

import matplotlib.pyplot as plt
import numpy as np

from probprop import ConformalRegressor, PBPRegressor

rng = np.random.default_rng(0)


def sample(n):
    x = rng.uniform(-3, 3, (n, 1))
    # heteroscedastic, heavy-tailed noise: PBP's single Gaussian noise is wrong here
    return x, np.sin(2 * x[:, 0]) + (0.1 + 0.3 * np.abs(x[:, 0])) * rng.standard_t(3, n)


X, y = sample(600)
X_test, y_test = sample(2000)
model = PBPRegressor(hidden=(50,), epochs=20, random_state=0)
plain = PBPRegressor(hidden=(50,), epochs=20, random_state=0).fit(X, y)
conformal = {m: ConformalRegressor(model, method=m, random_state=0).fit(X, y) for m in ("absolute", "normalized")}

lower, upper = plain.predict_dist(X_test).interval(0.9)
print(f"PBP alone:            coverage {np.mean((lower <= y_test) & (y_test <= upper)):.3f}, "
      f"mean width {np.mean(upper - lower):.2f}")
for name, wrapped in conformal.items():
    lo, hi = wrapped.predict_interval(X_test, confidence=0.9)
    print(f"conformal {name:<10}: coverage {np.mean((lo <= y_test) & (y_test <= hi)):.3f}, "
          f"mean width {np.mean(hi - lo):.2f}")

# %%
# The normalised score keeps the model's sense of where it is unsure:
grid = np.linspace(-3, 3, 300)[:, None]
fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(X_test[:400, 0], y_test[:400], s=4, color="0.6", label="test data")
for (name, wrapped), color in zip(conformal.items(), ("C1", "C0")):
    lo, hi = wrapped.predict_interval(grid, confidence=0.9)
    ax.fill_between(grid[:, 0], lo, hi, color=color, alpha=0.3, label=f"90 % conformal, {name}")
ax.plot(grid[:, 0], plain.predict(grid), "k", lw=1, label="PBP mean")
ax.set_ylim(-5, 5)
ax.legend(fontsize=8, loc="upper left")
ax.set_xlabel("x")
ax.set_ylabel("y")
fig.tight_layout()
