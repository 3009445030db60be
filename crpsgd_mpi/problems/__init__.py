"""What the workers optimise: the Problem contract and the registered problems (logistic regression; ResNet20 and a
small convnet with the optional extra [torch])."""

from . import deep, logreg  # noqa: F401  (they register themselves)
from .base import PROBLEMS, Problem, Reduce, Smoothness, register_problem
from .kernels import (
    block_rows,
    dense_minibatch_grads,
    gathered_minibatch_grad,
    gram_apply,
    loss_grad_sums,
    sparse_minibatch_grad,
    stacked_gram_apply,
    stacked_loss_grad_sums,
    uses_compiled,
)
from .logreg import LogisticRegression
from .regularizers import L2, NonConvex, NoRegularizer, Regularizer, make_regularizer

__all__ = ["L2", "PROBLEMS", "LogisticRegression", "NoRegularizer", "NonConvex", "Problem", "Reduce", "Regularizer",
           "Smoothness", "block_rows", "dense_minibatch_grads", "gathered_minibatch_grad", "gram_apply",
           "loss_grad_sums", "make_regularizer", "register_problem", "sparse_minibatch_grad",
           "stacked_gram_apply", "stacked_loss_grad_sums", "uses_compiled"]
