"""Entropy coding: a binary-exact adaptive arithmetic coder and its models."""

from .arith import ArithmeticDecoder, ArithmeticEncoder, EntropyError
from .models import AdaptiveModel, SignedCoder

__all__ = ["ArithmeticDecoder", "ArithmeticEncoder", "EntropyError", "AdaptiveModel", "SignedCoder"]
