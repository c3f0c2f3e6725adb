"""``classify``: an iris-species classifier (scikit-learn), trained at start-up.

The iris data set ships inside scikit-learn, so nothing is downloaded. Input:
``{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
"petal_width": 0.2}`` in centimetres. Output: ``{"label": "setosa",
"probabilities": {"setosa": 0.97, ...}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from tenfold.model import Model


class Flower(BaseModel):
    sepal_length: float = Field(gt=0, lt=100, description="cm")
    sepal_width: float = Field(gt=0, lt=100, description="cm")
    petal_length: float = Field(gt=0, lt=100, description="cm")
    petal_width: float = Field(gt=0, lt=100, description="cm")


def train() -> Any:
    """Fit the pipeline on the bundled iris data (deterministic)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(data.data, data.target)
    clf.target_names_ = [str(n) for n in data.target_names]
    return clf


class Classify(Model[Flower, dict[str, Any]]):
    name = "classify"
    version = "iris-logreg-1"
    input_model: ClassVar[Any] = Flower
    max_batch_size = 64
    batch_timeout_ms = 2.0

    def load(self) -> None:
        self.clf = train()
        self.labels: list[str] = self.clf.target_names_

    def predict(self, batch: list[Flower]) -> list[dict[str, Any]]:
        import numpy as np

        x = np.array(
            [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width] for f in batch]
        )
        probs = self.clf.predict_proba(x)
        return [
            {
                "label": self.labels[int(row.argmax())],
                "probabilities": {
                    lab: round(float(p), 6) for lab, p in zip(self.labels, row, strict=True)
                },
            }
            for row in probs
        ]
