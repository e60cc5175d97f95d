"""The training layer: the loop, checkpoints, schedules and distributed helpers.

It knows models only through :class:`aekit.models.base.Autoencoder` and never branches on a
model's name.  (``aekit.train``, the function users call, is :func:`aekit.app.training.train`;
see ``aekit/__init__.py`` for how the two share the name.)
"""
