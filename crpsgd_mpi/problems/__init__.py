"""What the workers optimise: logistic regression (dense or sparse, three regularisers)."""

from .logreg import (
    L2,
    NonConvex,
    NoRegularizer,
    Regularizer,
    block_rows,
    dense_minibatch_grads,
    gathered_minibatch_grad,
    gram_apply,
    loss_grad_sums,
    make_regularizer,
    one_blas_thread,
    sparse_minibatch_grad,
    stacked_gram_apply,
    stacked_loss_grad_sums,
    uses_blas,
)

__all__ = ["L2", "NoRegularizer", "NonConvex", "Regularizer", "block_rows", "dense_minibatch_grads",
           "gathered_minibatch_grad", "gram_apply", "loss_grad_sums", "make_regularizer", "one_blas_thread",
           "sparse_minibatch_grad", "stacked_gram_apply", "stacked_loss_grad_sums", "uses_blas"]
