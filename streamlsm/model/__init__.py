"""The model: the bundle (projection heads + reservoir configs), numpy inference, prototypes, calibration."""

from __future__ import annotations

from .bundle import Bundle, embed, feature_transform
from .projection import ProjectionHead, gelu, l2_normalise

__all__ = ["Bundle", "ProjectionHead", "gelu", "l2_normalise", "embed", "feature_transform"]
