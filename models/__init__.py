"""The mathematics being simulated: problems, parameterizations, initializations, dynamics engines.

``models`` imports nothing from ``verify``, ``properties`` or ``reports`` (its own lowest level, ``models.stored``,
imports nothing of the suite at all).
"""

from . import inits
from .engines import ENGINES, AbstractEngine, engine_class, get_engine
from .errors import EngineFailure, InvalidInput, SuiteError
from .factorizations import (CP, DeepMatrix, balancedness, component_norms, cp_factor_grads, cp_tensor,
                             det_sign_of_product, factor_grads, product)
from .generators import (GENERATORS, generate, random_completion, random_sensing, random_tensor, rc20_larger)
from .inits import Init
from .problem_files import ProblemFileError, load_problem, problem_from_data, problem_to_data, save_problem
from .problems import (MatrixProblem, TensorProblem, completion, problem_from_dict, random_tensor_completion, rc20,
                       sensing, tensor_completion)
from .trajectory import Point, Status, Trajectory

__all__ = [
    "CP", "DeepMatrix", "ENGINES", "AbstractEngine", "EngineFailure", "Init", "InvalidInput", "MatrixProblem",
    "Point", "Status", "SuiteError", "TensorProblem", "Trajectory", "balancedness", "completion", "component_norms",
    "cp_factor_grads", "cp_tensor", "det_sign_of_product", "engine_class", "factor_grads", "get_engine", "inits",
    "problem_from_dict", "product", "random_tensor_completion", "rc20", "sensing", "tensor_completion",
    # problems as data (issue 12)
    "GENERATORS", "ProblemFileError", "generate", "load_problem", "problem_from_data", "problem_to_data",
    "random_completion", "random_sensing", "random_tensor", "rc20_larger", "save_problem",
]
