"""poolbench: when does partial pooling beat pooled and unpooled regression?

Kept free of heavy imports so that `poolbench.runtime` can pin BLAS threads
before numpy is loaded.
"""

__version__ = "0.1.0"
