"""Files: the formats the package reads and writes, and how it writes them safely.

``formats`` (one table of adapters: npz, npy, torch, safetensors), ``classifiers``
(a linear classifier's ``W`` and ``b`` read and written back in its own format),
``data_files`` (features, labels, class names, groups and neighbour files),
``_atomic`` (outputs that appear whole or not at all), ``_paths`` (no output
overwrites an input) and ``_npy_stream`` (a ``.npy`` written block by block).
Nothing here knows the method.
"""
