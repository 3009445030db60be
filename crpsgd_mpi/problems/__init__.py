"""What the workers optimise: logistic regression (dense or sparse, three regularisers)."""

from .logreg import (
    L2,
    NonConvex,
    NoRegularizer,
    Regularizer,
    dense_minibatch_grads,
    gram_apply,
    loss_grad_sums,
    make_regularizer,
    sparse_minibatch_grad,
)

__all__ = ["L2", "NoRegularizer", "NonConvex", "Regularizer", "dense_minibatch_grads", "gram_apply", "loss_grad_sums",
           "make_regularizer", "sparse_minibatch_grad"]
