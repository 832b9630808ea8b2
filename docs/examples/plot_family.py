"""
The family side by side
=======================

Every probprop regressor on scikit-learn's diabetes data (bundled with scikit-learn), with a short
training budget: test log-likelihood and RMSE of each. The benchmark reports compare them properly
on the UCI sets, with all splits and the papers' protocols.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from probprop import (
    DeepEnsembleRegressor,
    DVIRegressor,
    MAPRegressor,
    MCDropoutRegressor,
    PBPRegressor,
    TAGIRegressor,
)

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
models = {
    "PBP": PBPRegressor(epochs=40, random_state=0),
    "TAGI": TAGIRegressor(epochs=20, random_state=0),
    "DVI": DVIRegressor(epochs=40, random_state=0),
    "MAP": MAPRegressor(epochs=40, random_state=0),
    "deep ensemble": DeepEnsembleRegressor(epochs=40, random_state=0),
    "MC dropout": MCDropoutRegressor(epochs=40, dropout=0.05, tau=0.5 / np.var(y_train), random_state=0),
}
scores = {}
for name, model in models.items():
    model.fit(X_train, y_train)
    mean = model.predict(X_test)
    scores[name] = (model.score(X_test, y_test), float(np.sqrt(np.mean((mean - y_test) ** 2))))
    print(f"{name:<14} test LL {scores[name][0]:7.3f}   RMSE {scores[name][1]:6.2f}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
names = list(scores)
axes[0].barh(names, [scores[n][0] for n in names], color="C0")
axes[0].set_xlabel("test log-likelihood (higher is better)")
axes[0].set_xlim(min(s[0] for s in scores.values()) - 0.1, max(s[0] for s in scores.values()) + 0.05)
axes[1].barh(names, [scores[n][1] for n in names], color="C1")
axes[1].set_xlabel("test RMSE (lower is better)")
axes[1].set_yticks([])
fig.tight_layout()
