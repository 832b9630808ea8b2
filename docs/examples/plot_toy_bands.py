"""
What the model knows and what it does not: the 1-D toy of the PBP paper
========================================================================

Twenty points of ``y = x**3 + noise`` (Hernández-Lobato & Adams 2015, Fig. 1). PBP's predictive
distribution splits into the noise it has learned and its epistemic uncertainty, which grows away
from the data.
"""

import matplotlib.pyplot as plt
import numpy as np

from probprop import PBPRegressor
from probprop.data.toy import make_toy_1d, toy_grid

X, y = make_toy_1d(random_state=0)
model = PBPRegressor(hidden=(100,), epochs=40, random_state=0).fit(X, y)

grid = toy_grid()
dist = model.predict_dist(grid)
x = grid[:, 0]
fig, ax = plt.subplots(figsize=(7, 4))
ax.fill_between(x, dist.mean - 2 * dist.std, dist.mean + 2 * dist.std, color="C0", alpha=0.2,
                label="±2 sd, total")
ax.fill_between(x, dist.mean - 2 * dist.epistemic_std, dist.mean + 2 * dist.epistemic_std, color="C0",
                alpha=0.4, label="±2 sd, epistemic only")
ax.plot(x, dist.mean, "C0", label="predictive mean")
ax.plot(x, x**3, "k--", lw=1, label="truth")
ax.scatter(X[:, 0], y, color="C3", zorder=3, label="training data")
ax.set_ylim(-150, 150)
ax.legend(loc="upper left", fontsize=8)
ax.set_xlabel("x")
ax.set_ylabel("y")
fig.tight_layout()

# %%
# The noise variance the model learned, and how much larger the epistemic part is at the edges:
print(f"noise sd (learned): {np.sqrt(dist.noise_var[0]):.2f}  (truth 3)")
print(f"epistemic sd at x=0: {dist.epistemic_std[np.argmin(np.abs(x))]:.2f}, at x=6: {dist.epistemic_std[-1]:.2f}")
