"""The handout's three example networks, built from fastrnn layers, with their data and a
training command line (`python -m fastrnn.train`). The library itself imports nothing from
here.

Each model takes `use_torch=True` to build the same network from torch.nn's layers: the
parameter names are the same, so a state_dict moves between the two and the results can
be compared.
"""
from .charlm import CharLanguageModel, CharLMSettings, CharLMTask
from .classify import ClassifySettings, ClassifyTask, SentimentClassifier
from .common import recurrent_layer
from .sort import Sorter, SortSettings, SortTask

TASKS = {task.name: task for task in (ClassifyTask, CharLMTask, SortTask)}

__all__ = ["SentimentClassifier", "CharLanguageModel", "Sorter", "recurrent_layer",
           "ClassifySettings", "CharLMSettings", "SortSettings", "TASKS"]
