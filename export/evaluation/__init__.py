"""Accuracy benchmarks (``gfn-eval``): LFW-style face verification, IJB-B/C, WIDER FACE.

"Verification" here is 1:1 face verification (are two faces the same person?), not gfn-export's
artifact verification (does an exported file match its reference?).

Reference models and exported bundles are evaluated side by side on the same pixels, with
protocol code of our own that the tests check against hand-computed cases:

- :mod:`.verification` - ROC, AUC, TAR@FAR, k-fold accuracy (pure numpy; the threshold rules and
  the pairs CSV reader are gfn_edge's own, :mod:`gfn_edge.metrics` and :mod:`gfn_edge.pairs`);
- :mod:`.binfile`, :mod:`.pairs_csv`, :mod:`.ijb`, :mod:`.widerface` (+ :mod:`.matfile`) - data
  sets and their protocols;
- :mod:`.runners` - how a reference or a bundle produces embeddings and detections;
- :mod:`.suites` - the evaluations end to end; :mod:`.report`, :mod:`.roc_plot` - Markdown
  tables and curves; :mod:`.cli` - the ``gfn-eval`` command.
"""

from __future__ import annotations

from .verification import Roc, TarAtFar, auc, kfold_accuracy, pair_scores, roc_curve, summarize, tar_at_far

__all__ = ["Roc", "TarAtFar", "auc", "kfold_accuracy", "pair_scores", "roc_curve", "summarize", "tar_at_far"]
