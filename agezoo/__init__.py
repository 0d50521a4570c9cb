"""agezoo's application layer: the ``agezoo`` command, the backend table, ``make pretrain``.

Below it sit the frameworks (``torch_impl``, ``tf_impl``) and below those the framework-free
floor (``common``, ``weights``); imports only point down (``tests/test_layers.py``).
"""
