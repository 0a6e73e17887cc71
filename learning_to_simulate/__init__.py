"""TensorFlow 2 port of "Learning to Simulate Complex Physics with Graph Networks".

Sanchez-Gonzalez et al., ICML 2020 (arXiv:2002.09405).
"""

__version__ = "0.1.0"

import os as _os

# Hide TensorFlow's C++ INFO lines (oneDNN notices and such) unless the user
# asked for them; warnings and errors still show.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
