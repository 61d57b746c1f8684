"""The built-in models: one module per source system, forward and hand backward side by side.

Each module follows its document's equations and cites them on the lines that implement them
(``seed001.py`` is the model to copy), and exposes ``models()``, the :class:`~jaxprop.Model` objects
it defines. The registry that names them, with the worked examples' checks, is
:mod:`jaxprop.registry`. May import: ``model``, ``nn``, ``util`` (never the checker: the contract
is passive).

- :mod:`.seed000`: the two-layer network with a squared error (``two-layer-mse``).
- :mod:`.seed001`: the 2-500-2 tanh-softmax network (``tanh-softmax``).
- :mod:`.seed002`: the K-layer network (``k-layer``); :mod:`.seed002_calculus` the vector-calculus
  examples and least squares; :mod:`.seed002_lecture` the lecture's two-layer sigmoid network.
- :mod:`.seed003`: the delta rule per neuron and per layer (``neuron-delta-*``).
"""
