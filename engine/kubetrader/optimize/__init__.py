"""Parameter search: spaces, constraints, studies, walk-forward validation and
overfitting diagnostics. The pure pieces (space, constraints, windows, statistics)
import nothing heavy; the study driver imports Optuna where it runs."""
