"""The pipeline's stages, one module each, run by DVC as `python -m stages.<name>` (see dvc.yaml).

fraudflow is imported first, so its pinned settings are in place before any stage loads numpy or TensorFlow.
"""

import fraudflow  # noqa: F401
