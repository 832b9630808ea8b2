"""
Predictions that know their inputs are noisy
============================================

When the inputs are measured with noise of a known scale, ``predict_dist(X, X_var=...)`` carries
that noise through the network (in closed form for PBP), so the predictive distribution widens
where the function is steep. Compared here with Monte Carlo over the input noise.
"""

import matplotlib.pyplot as plt
import numpy as np

from probprop import PBPRegressor

rng = np.random.default_rng(0)
X = rng.uniform(-3, 3, (400, 1))
y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(400)
model = PBPRegressor(hidden=(50,), epochs=40, random_state=0).fit(X, y)

grid = np.linspace(-3, 3, 200)[:, None]
input_sd = 0.3
plain = model.predict_dist(grid)
noisy = model.predict_dist(grid, X_var=input_sd**2)

# Monte Carlo: predict at sampled inputs and mix the Gaussians
draws = grid[None] + input_sd * rng.standard_normal((500, *grid.shape))
parts = [model.predict_dist(d) for d in draws]
mc_mean = np.mean([p.mean for p in parts], axis=0)
mc_var = np.mean([p.var + p.mean**2 for p in parts], axis=0) - mc_mean**2

fig, ax = plt.subplots(figsize=(7, 4))
ax.fill_between(grid[:, 0], plain.mean - 2 * plain.std, plain.mean + 2 * plain.std, alpha=0.3,
                label="±2 sd, inputs taken as exact")
ax.fill_between(grid[:, 0], noisy.mean - 2 * noisy.std, noisy.mean + 2 * noisy.std, alpha=0.3,
                label=f"±2 sd, X_var = {input_sd}²")
ax.plot(grid[:, 0], mc_mean + 2 * np.sqrt(mc_var), "k:", lw=1, label="Monte Carlo ±2 sd")
ax.plot(grid[:, 0], mc_mean - 2 * np.sqrt(mc_var), "k:", lw=1)
ax.legend(fontsize=8, loc="lower left")
ax.set_xlabel("x")
ax.set_ylabel("y")
fig.tight_layout()

# %%
print(f"largest relative error of the closed-form sd against Monte Carlo: "
      f"{np.max(np.abs(noisy.std / np.sqrt(mc_var) - 1)):.3f}")
