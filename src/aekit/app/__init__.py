"""The application layer: what the commands do, composed from the layers below.

``training`` (train a run), ``evaluation`` (score it), ``inspect`` (samples, plots, embeddings,
PCA), ``apply`` (run a model over the user's image files) and ``report`` (the HTML page).  The
CLI and the web server call these; the layers below know nothing of them.
"""
