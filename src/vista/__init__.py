"""vista: sparse autoencoders on vision-encoder activations.

The package reads as the pipeline: ``sources`` (images -> activations) -> ``store`` (HDF5 activation
store) -> ``saes`` + ``train`` (sparse autoencoders) -> ``metrics`` + ``analysis`` (evaluation) ->
``reports``. ``cli`` wires them into the ``vista`` command.
"""

__version__ = "0.1.0"
