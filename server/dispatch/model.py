"""The pure model: fit and explain. No database, no I/O except `save`/`load`."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


@dataclass
class DepartmentScore:
    department_id: int
    probability: float
    #: the character n-grams that pushed the score up most (the "why")
    reasons: list[str]


@dataclass
class SimilarCase:
    case_id: int
    similarity: float


@dataclass
class Suggestion:
    model_version: str
    departments: list[DepartmentScore]
    similar: list[SimilarCase] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "departments": [d.__dict__ for d in self.departments],
            "similar": [s.__dict__ for s in self.similar],
        }


class DispatchModel:
    def __init__(self) -> None:
        self.vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, 3), min_df=1, sublinear_tf=True, max_features=200_000
        )
        self.classifier = LogisticRegression(max_iter=1000, C=10.0)
        self.case_ids: list[int] = []
        self.case_matrix: Any = None
        self.version = ""

    def fit(self, texts: list[str], labels: list[int], case_ids: list[int] | None = None) -> None:
        if len(set(labels)) < 2:
            raise ValueError("training needs cases of at least two departments")
        matrix = self.vectorizer.fit_transform(texts)
        self.classifier.fit(matrix, labels)
        self.case_ids = list(case_ids or [])
        self.case_matrix = matrix if case_ids else None
        digest = hashlib.sha256(
            ("|".join(texts[:1000]) + str(len(texts)) + str(Counter(labels))).encode()
        ).hexdigest()[:12]
        self.version = f"tfidf-lr-{digest}"

    def predict(self, texts: list[str]) -> list[int]:
        return [int(x) for x in self.classifier.predict(self.vectorizer.transform(texts))]

    def suggest(self, text: str, *, top: int = 3, reasons: int = 5, similar: int = 5) -> Suggestion:
        vec = self.vectorizer.transform([text])
        probs = self.classifier.predict_proba(vec)[0]
        order = np.argsort(probs)[::-1][:top]
        names = self.vectorizer.get_feature_names_out()
        present = vec.nonzero()[1]
        out = []
        for idx in order:
            cls_pos = int(idx)
            coef = self.classifier.coef_[cls_pos if self.classifier.coef_.shape[0] > 1 else 0]
            if self.classifier.coef_.shape[0] == 1 and cls_pos == 0:
                coef = -coef
            contrib = sorted(
                ((float(coef[j] * vec[0, j]), str(names[j])) for j in present), reverse=True
            )
            out.append(
                DepartmentScore(
                    department_id=int(self.classifier.classes_[cls_pos]),
                    probability=round(float(probs[cls_pos]), 4),
                    reasons=[g for score, g in contrib if score > 0 and g.strip()][:reasons],
                )
            )
        sims: list[SimilarCase] = []
        if self.case_matrix is not None and self.case_ids:
            scores = (self.case_matrix @ vec.T).toarray().ravel()
            for j in np.argsort(scores)[::-1][:similar]:
                if scores[j] > 0:
                    sims.append(SimilarCase(self.case_ids[int(j)], round(float(scores[j]), 4)))
        return Suggestion(model_version=self.version, departments=out, similar=sims)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> DispatchModel:
        # Only files this process wrote (data_dir, not user uploads) are loaded.
        model = pickle.loads(path.read_bytes())
        if not isinstance(model, DispatchModel):
            raise TypeError("not a dispatch model file")
        return model
