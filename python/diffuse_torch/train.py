"""Trains a diffuse model with DistributedDataParallel: the same noise schedule, target (ε or v), loss,
Adam, learning-rate schedule and weight average as `diffuse train`, on as many processes as torchrun
starts (gloo on CPUs, NCCL on GPUs), on one machine or several.

    torchrun --nproc_per_node 2 -m diffuse_torch.train --init run.safetensors --epochs 10 --out run2.safetensors
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 -m diffuse_torch.train ...

--init takes a file written by `diffuse export --safetensors` (its weights and run record; Adam starts
afresh) or, with --model fc|unet and --data, a fresh run with diffuse's default recipe. The result is a
safetensors file with the averaged weights as `ema.*` and the updated record; `diffuse import` takes it.
--batch-size is the global batch, split evenly over the processes.

A conditional record (model.classes > 0: `diffuse train --conditional`, or --conditional here for a fresh
run) trains on the data's labels (MNIST's digits; a folder's class subfolders, named and ordered by the
record's data.classes), each dropped to "no class" with the record's training.labelDropout (or
--label-dropout), as diffuse's trainer does.
"""
import argparse
import copy
import json
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from . import models, safetensors_io
from .data import MNIST_CLASSES, folder_classes, load_data

# The run record version this trainer reads up to and writes (diffuse's RUN_RECORD_VERSION).
RECORD_VERSION = 6
DEFAULT_LABEL_DROPOUT = 0.1  # diffuse's DEFAULTS.labelDropout


def migrate_record(record, version, file):
    """A record of `version` brought to RECORD_VERSION, filled as diffuse's migrateRunRecord fills it."""
    if version > RECORD_VERSION:
        raise SystemExit(f"{file} has record version {version}; this diffuse_torch reads up to {RECORD_VERSION} (a newer diffuse wrote it)")
    model, data, training = record["model"], record["data"], record["training"]
    if version == 1:
        model.setdefault("channels", 1)
        if model["kind"] == "unet":
            model.setdefault("outputNorm", True)
        record["schedule"].setdefault("prediction", "epsilon")
        training.setdefault("ema", 0)
        training.setdefault("lrSchedule", {"kind": "constant", "warmupSteps": 0, "totalSteps": 0})
        sampling = record.setdefault("sampling", {"clipDenoised": False})
        sampling.setdefault("sampler", "ancestral")
        sampling.setdefault("steps", None)
    if version <= 2:  # until version 3 there was no flip, and folders were composited onto black
        data["flip"] = False
        if data["dataset"] == "folder":
            data["background"] = "#000000"
    if version <= 3 and model["kind"] == "unet":
        model["patchSize"] = 1
    if version <= 4:  # every model before version 5 was unconditional
        model["classes"] = 0
        data["conditional"] = False
        data["classes"] = []
        training["labelDropout"] = 0
    if version <= 5:  # before version 6 every run drew t uniformly and weighted every error alike
        training["weighting"] = {"kind": "uniform"}
        training["levels"] = {"kind": "uniform"}
    return record


def draw_timesteps(levels, abar, count, device):
    """diffuse's TimestepSampler: t uniform, or EDM's log-normal ln σ taken to the timestep of nearest ln σ."""
    T = len(abar)
    if levels["kind"] == "uniform":
        return torch.randint(0, T, (count,), device=device)
    log_sigma = 0.5 * torch.log((1 - abar) / abar)
    drawn = levels["mean"] + levels["std"] * torch.randn(count, device=device)
    return (log_sigma[None, :] - drawn[:, None]).abs().argmin(1)


def loss_weights(weighting, a, prediction):
    """diffuse's lossWeights: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v; None for uniform."""
    if weighting["kind"] == "uniform":
        return None
    snr = a / (1 - a)
    return snr.clamp(max=weighting["gamma"]) / (snr if prediction == "epsilon" else snr + 1)


def learning_rate_at(peak, schedule, step):
    """diffuse's learningRateAt: linear warm-up (at most a tenth of a run of known length), then a half cosine to 0."""
    total = schedule["totalSteps"]
    warmup = min(schedule["warmupSteps"], total // 10) if total > 0 else schedule["warmupSteps"]
    if step <= warmup:
        return peak * step / warmup
    if schedule["kind"] == "constant" or total <= 0:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * peak * (1 + math.cos(math.pi * progress))


def default_record(kind, data, channels, size):
    """A fresh run's record with diffuse's default recipe (for runs that do not start from an exported file)."""
    if kind == "fc":
        model = {"kind": "fc-unet", "classes": 0, "width": 2048, "height": size, "imageWidth": size, "channels": channels}
        training, prediction = dict(batchSize=128, ema=0.9995), "epsilon"
        sampling = {"sampler": "dpmpp-2m", "steps": 20}
    else:
        # as diffuse's unetConfig (src/models/unet.ts): from 64 px a wider net on 2x2 patches
        wide = size >= 64
        model = {"kind": "unet", "classes": 0, "height": size, "imageWidth": size, "channels": channels, "baseChannels": 32 if wide else 16,
                 "channelMults": [1, 2, 2, 4] if wide else [1, 2, 4], "patchSize": 2 if wide else 1, "blocksPerStage": 1,
                 "attentionResolutions": [8, 4] if wide else [8], "groups": 8, "heads": 4, "outputNorm": False}
        training, prediction = dict(batchSize=64, ema=0.999), "v"
        sampling = {"sampler": "ddim", "steps": 100} if wide else {"sampler": "dpmpp-2m", "steps": 20}
    dataset = data if data in ("mnist", "mnist32") else "folder"
    return {
        "model": model,
        "schedule": {"kind": "linear", "timesteps": 1000, "betaStart": 1e-4, "betaEnd": 0.02, "prediction": prediction},
        "data": {"dataset": dataset, **({"path": os.path.abspath(data), "imageSize": size, "channels": channels, "background": "#ffffff"} if dataset == "folder" else {}),
                 "flip": False, "limit": 0, "count": 0, "conditional": False, "classes": []},
        "training": {"epoch": 0, "step": 0, "optimizer": {"kind": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
                     "seed": 0, "rng": {"s": [1, 2, 3, 4]}, "loss": None, "lrSchedule": {"kind": "cosine", "warmupSteps": 1000, "totalSteps": 0},
                     "labelDropout": 0, "weighting": {"kind": "uniform"}, "levels": {"kind": "uniform"}, **training},
        "sampling": {"clipDenoised": False, **sampling},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", help="a safetensors file from `diffuse export --safetensors` (or from this script)")
    p.add_argument("--model", choices=["fc", "unet"], help="without --init: a fresh model with diffuse's defaults")
    p.add_argument("--data", help="mnist, mnist32 or a folder of images (default: the record's)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1, help="epochs to train in this run")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many updates (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=0, help="global batch (default: the record's)")
    p.add_argument("--limit", type=int, default=0, help="the first n images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditional", action="store_true", help="without --init: train on the data's labels (MNIST's digits, a folder's class subfolders)")
    p.add_argument("--label-dropout", type=float, help=f"a conditional run's chance of dropping a label to 'no class' (default: the record's; a fresh run {DEFAULT_LABEL_DROPOUT})")
    p.add_argument("--check-sync", action="store_true", help="after every update, check that all processes hold identical weights")
    p.add_argument("--out", required=True, help="the safetensors file to write (rank 0)")
    args = p.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed + rank)

    if args.init:
        tensors, metadata = safetensors_io.load(args.init)
        if "diffuse.record" not in metadata:
            p.error(f"{args.init} has no diffuse run record in its metadata (diffuse.record)")
        record = migrate_record(json.loads(metadata["diffuse.record"]), int(metadata.get("diffuse.record_version", "3")), args.init)
        if args.conditional and not record["model"]["classes"]:
            p.error(f"--conditional: {args.init} is an unconditional model (its record has no classes); start a conditional run with diffuse train --conditional, or here without --init")
    elif args.model and args.data:
        tensors, record = None, default_record(args.model, args.data, 1 if args.data in ("mnist", "mnist32") else args.channels, 28 if args.data == "mnist" else 32 if args.data == "mnist32" else args.image_size)
        if args.conditional:
            classes = MNIST_CLASSES if args.data in ("mnist", "mnist32") else folder_classes(args.data)
            if len(classes) < 2:
                p.error(f"--conditional: {args.data} needs at least two classes (subfolders), found {len(classes)}")
            record["model"]["classes"] = len(classes)
            record["data"].update(conditional=True, classes=list(classes))
            record["training"]["labelDropout"] = DEFAULT_LABEL_DROPOUT
    else:
        p.error("give --init FILE, or --model and --data")
    classes = record["model"]["classes"]
    if args.label_dropout is not None:
        if not classes:
            p.error("--label-dropout applies to a conditional model, and this one is not")
        if not 0 <= args.label_dropout <= 1:
            p.error(f"--label-dropout must be in [0, 1], not {args.label_dropout}")
        record["training"]["labelDropout"] = args.label_dropout
    if classes and len(record["data"]["classes"]) != classes:
        raise SystemExit(f"the record's model has {classes} classes, its data names {len(record['data']['classes'])}")
    data_name = args.data or (record["data"]["path"] if record["data"]["dataset"] == "folder" else record["data"]["dataset"])
    images, labels = load_data(data_name, record["model"], args.limit, record["data"].get("background", "#000000"), record["data"]["classes"] if classes else None)
    record["data"]["count"] = len(images)

    model = models.build(record["model"]).to(device)
    if tensors is not None:
        models.load_state(model, tensors)
    average = copy.deepcopy(model).requires_grad_(False)
    if tensors is not None and any(k.startswith("ema.") for k in tensors):
        models.load_state(average, tensors, "ema.")
    net = DDP(model) if distributed else model

    tr, sched = record["training"], record["schedule"]
    T = sched["timesteps"]
    abar = torch.cumprod(1 - torch.linspace(sched["betaStart"], sched["betaEnd"], T, dtype=torch.float64), 0).float().to(device)
    batch = args.batch_size or tr["batchSize"]
    if batch % world:
        p.error(f"--batch-size {batch} does not split evenly over {world} processes")
    local = batch // world
    steps_per_epoch = len(images) // batch
    opt = torch.optim.Adam(model.parameters(), lr=tr["optimizer"]["lr"], betas=(tr["optimizer"]["beta1"], tr["optimizer"]["beta2"]), eps=tr["optimizer"]["epsilon"])
    schedule = dict(tr["lrSchedule"], totalSteps=tr["step"] + args.epochs * steps_per_epoch)
    step0 = tr["step"]
    x_all = torch.from_numpy(images).to(device)
    y_all = torch.from_numpy(labels).to(device) if classes else None
    dropout = tr["labelDropout"] if classes else 0
    losses, started = [], time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed * 1000 + tr["epoch"] + epoch))
        for b in range(steps_per_epoch):
            idx = order[b * batch:(b + 1) * batch][rank * local:(rank + 1) * local]
            x0 = x_all[idx.to(device)]
            if record["data"].get("flip"):  # mirror left-right with probability 1/2, as diffuse's --flip
                m = record["model"]
                img = x0.view(local, m["height"], m["imageWidth"], m["channels"])
                x0 = torch.where(torch.rand(local, 1, 1, 1, device=device) < 0.5, img.flip(2), img).reshape(local, -1)
            t = draw_timesteps(tr["levels"], abar, local, device)
            eps = torch.randn_like(x0)
            a = abar[t][:, None]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            target = eps if sched["prediction"] == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
            if classes:
                # each label dropped to "no class" (the index `classes`) with the run's label dropout
                y = torch.where(torch.rand(local, device=device) < dropout, torch.full_like(y_all[idx.to(device)], classes), y_all[idx.to(device)])
                out = net(xt, t.float() / T, y)
            else:
                out = net(xt, t.float() / T)
            w = loss_weights(tr["weighting"], a, sched["prediction"])
            loss = F.mse_loss(out, target) if w is None else (w * (out - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            tr["step"] += 1
            for g in opt.param_groups:
                g["lr"] = learning_rate_at(tr["optimizer"]["lr"], schedule, tr["step"])
            opt.step()
            if tr["ema"]:
                d = min(tr["ema"], (1 + tr["step"]) / (10 + tr["step"]))
                with torch.no_grad():
                    for s, w in zip(average.parameters(), model.parameters()):
                        s.mul_(d).add_(w, alpha=1 - d)
            losses.append(loss.item())
            if args.check_sync and distributed:
                flat = torch.cat([w.detach().flatten() for w in model.parameters()])
                gathered = [torch.empty_like(flat) for _ in range(world)]
                dist.all_gather(gathered, flat)
                if not all(torch.equal(gathered[0], g) for g in gathered):
                    raise SystemExit(f"rank {rank}: weights differ between processes after update {tr['step']}")
            if args.max_steps and tr["step"] - step0 >= args.max_steps:
                break
        tr["epoch"] += 1
        if args.max_steps and tr["step"] - step0 >= args.max_steps:
            break
    seconds = time.time() - started
    tr["loss"] = float(np.mean(losses)) if losses else None
    tr["lrSchedule"] = schedule
    if rank == 0:
        out = models.state_tensors(model)
        if tr["ema"]:
            out.update(models.state_tensors(average, "ema."))
        safetensors_io.save(args.out, out, {"format": "pt", "diffuse.record": json.dumps(record), "diffuse.record_version": str(RECORD_VERSION)})
        print(json.dumps({"processes": world, "updates": tr["step"] - step0, "seconds": round(seconds, 3),
                          "seconds_per_update": round(seconds / max(1, tr["step"] - step0), 4), "loss": tr["loss"], "out": args.out}), flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
