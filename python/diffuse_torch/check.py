"""Outputs of a safetensors model's twin on given inputs (for the tests):
python3 -m diffuse_torch.check MODEL.safetensors X.npy TFRAC.npy OUT.npy [--ema] [--labels LABELS.npy]
(LABELS: [b] class indices of a conditional model, the index `classes` for no class; without: no class)."""
import json
import sys

import numpy as np
import torch

from . import models, safetensors_io


def main(argv=None):
    args = argv if argv is not None else sys.argv[1:]
    path, x_path, t_path, out_path = args[:4]
    tensors, metadata = safetensors_io.load(path)
    record = json.loads(metadata["diffuse.record"])
    model = models.build(record["model"])
    models.load_state(model, tensors, "ema." if "--ema" in args else "")
    labels = torch.from_numpy(np.load(args[args.index("--labels") + 1])) if "--labels" in args else None
    with torch.no_grad():
        y = model(torch.from_numpy(np.load(x_path)), torch.from_numpy(np.load(t_path)), labels)
    np.save(out_path, y.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
