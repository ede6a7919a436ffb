"""Networks as graphs, multi-input modules, elementwise blocks, the RBF network, summary."""

from .describe import summary
from .elementwise import Cos, Exp, Log, Scale, Sin, Square
from .graph import Graph
from .ops import Add, Concat, Multiply, Residual, Split
from .rbf import Gaussian, RBFNetwork, SquaredDistance, WeightedSum

__all__ = ["Graph", "Add", "Multiply", "Concat", "Split", "Residual", "Square", "Exp", "Log",
           "Sin", "Cos", "Scale", "SquaredDistance", "Gaussian", "WeightedSum", "RBFNetwork",
           "summary"]
