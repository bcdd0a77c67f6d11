"""PyTorch twins of diffuse's models, its safetensors files, and multi-process training under torchrun.

diffuse (TypeScript, TensorFlow.js) trains on one machine; this package takes a model it exported
(`diffuse export --safetensors`) or a fresh configuration, trains it with DistributedDataParallel on as
many processes and machines as torchrun starts, and writes safetensors that `diffuse import` takes back.
"""
