"""Strict JAX settings for every test: silent broadcasting or dtype promotion is an error.

Hand-derived gradients break quietly when a (n,) bias meets a (B, n) batch the wrong way or a
float32 array meets a float64 one; under these settings both raise instead.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
