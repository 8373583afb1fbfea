"""Near-duplicates and label conflicts, one module per capability (each from its notebook in nbs/):

- `ssim`: flip-invariant SSIM of every pair inside a class (04_dedup_ssim);
- `search`: every pair of embeddings above a threshold, in bounded memory (04a_dedup_search);
- `local`: decoding once, visual words, and crops confirmed by ORB + RANSAC and a colour check (04b_dedup_local);
- `pipeline`: `DedupConfig` and `find_duplicates`, the stages that use the three (04c_dedup);

with what they build on below them: thumbnails in `dogcls.images`, embeddings in the feature store `dogcls.features`,
and the clusters and decisions in `dogcls.decisions` (shared with `dogcls.clean`). Every name `dogcls.dedup` had
before the split is still importable from here."""
# Written by hand, like dogcls/sections/__init__.py: nbdev exports the modules it imports.

from ..images import thumbnails, to_gray, to_grey
from ..features import embed, model_embeddings, pixel_embeddings, view_orders
from .ssim import SSIMIndex, gaussian_bands, within_class_ssim
from .search import cosine_pairs
from .local import (GEOMETRIC_COLUMNS, colour_distance, colour_distances, decode_all, geometric_check, top_dot_pairs,
    top_pairs, visual_words)
from .pipeline import (MATCH_SUMMARY_COLUMNS, PAIR_COLUMNS, SCORE_COLUMNS, DedupConfig, Duplicates, confirm_pairs,
    decode_images, exact_pairs, find_duplicates, geometric_pairs, link_pairs, match_summary, plot_scores,
    score_pairs)
from ..decisions import (CONFLICT_POLICIES, DECISION_COLUMNS, LOSSLESS_FORMATS, WITHIN_POLICIES, apply_decisions,
    file_facts, propose_decisions, protect_classes, save_decisions)

__all__ = [
    'GEOMETRIC_COLUMNS', 'PAIR_COLUMNS', 'SCORE_COLUMNS', 'MATCH_SUMMARY_COLUMNS', 'CONFLICT_POLICIES',
    'WITHIN_POLICIES', 'DECISION_COLUMNS', 'LOSSLESS_FORMATS', 'thumbnails', 'to_gray', 'to_grey', 'gaussian_bands',
    'SSIMIndex', 'within_class_ssim', 'pixel_embeddings', 'view_orders', 'model_embeddings', 'embed', 'cosine_pairs',
    'decode_all', 'visual_words', 'top_pairs', 'top_dot_pairs', 'colour_distances', 'colour_distance',
    'geometric_check', 'exact_pairs', 'DedupConfig', 'decode_images', 'score_pairs', 'confirm_pairs',
    'geometric_pairs', 'link_pairs', 'Duplicates', 'find_duplicates', 'plot_scores', 'match_summary', 'file_facts',
    'protect_classes', 'propose_decisions', 'apply_decisions', 'save_decisions',
]
