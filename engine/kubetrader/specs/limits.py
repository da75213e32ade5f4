"""Size limits on what a spec may ask for, in one place: the models enforce them, the CRDs repeat them.

Why: a study or a campaign is expanded by the operator (an admission check of the
space, a grid) and by the driver; without bounds one resource could make them
allocate gigabytes (`high: 10000000` with a constraint once took the operator to
416 MB in half a second, past its 512Mi limit, and `on.resume` ran it again after
every restart). Every limit here is checked arithmetically, before anything is
allocated, and the same number is written into the CRD (a schema bound, or a CEL
rule where it spans fields) so `kubectl apply` refuses it before the operator sees it.

A limit the CRD cannot express is said so at its definition: Kubernetes' CEL has no
fold over a map, so a product over the parameters of a space (the grid size) or
over a matrix's parameters (its cells) is checked by the models only; the operator
then marks the resource Failed with the reason, without allocating.
"""

from __future__ import annotations

# A parameter's bounds: wide enough for any trading parameter, small enough that every
# arithmetic on them (CEL's int64 included) stays exact.
PARAM_BOUND = 1_000_000_000
# Values one parameter may take on a grid ((high - low) / step + 1): also what Optuna's
# grid sampler and the feasibility check enumerate per parameter.
MAX_PARAM_VALUES = 1_000_000
MAX_SPACE_PARAMS = 32
MAX_CHOICES = 1000
# A grid (every parameter stepped) of more points than this is not enumerated: the
# grid sampler needs one (Optuna's GridSampler lists every combination), the feasibility
# check samples instead. Not expressible in CEL (a product over the space's map).
MAX_GRID_POINTS = 1_000_000
MAX_CONSTRAINTS = 32
MAX_CONSTRAINT_LENGTH = 200
# A constraint is refused when evaluating it could allocate (see kubetrader.optimize.constraints).
# Campaigns: list sizes (CRD maxItems) and the cross product (models only).
MAX_MATRIX_SYMBOLS = 100
MAX_MATRIX_STRATEGIES = 20
MAX_MATRIX_PARAMS = 16
MAX_MATRIX_VALUES = 1000
MAX_MATRIX_CELLS = 10_000
MAX_STRATEGY_PARAMS = 64
