#!/usr/bin/env bash
# Trains every stage of codi2-mini on two CPU cores, in two lanes, then the late stages one by one.
# Logs: codi2_sdk/weights/codi2-mini/training/*.log; the lanes' own output: runs/mini/lane-*.out
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
W=codi2_sdk/weights/codi2-mini
mkdir -p runs/mini
rm -f runs/mini/*.done
wait_for() { while [ ! -e "$1" ]; do sleep 10; done; }
( $PY tools/train_mini.py encoders && $PY tools/train_mini.py vae-audio && $PY tools/train_mini.py unet-audio && \
  touch runs/mini/audio.done && wait_for $W/decoders/image/vae && \
  $PY tools/train_mini.py unet-video && $PY tools/train_mini.py unet-video --steps 3000 ) \
  > runs/mini/lane-a.out 2>&1 &
lane_a=$!
( $PY tools/train_mini.py vae-image && wait_for $W/training/feature_norms.json && \
  $PY tools/train_mini.py unet-image && $PY tools/train_mini.py llm && \
  $PY tools/train_mini.py llm --steps 4500 && \
  wait_for runs/mini/audio.done && $PY tools/train_mini.py llm-v2 && \
  $PY tools/train_mini.py llm-v2 --steps 2500 ) > runs/mini/lane-b.out 2>&1 &  # llm and llm-v2 resume their runs to more steps
lane_b=$!
wait $lane_a
wait $lane_b
# subjects: the image encoder's texture branch and the image autoencoder side by side, then the image UNet and
# the LLM (vae-marks and, at the end, unet-marks resume their runs to more steps, as they were trained)
( $PY tools/train_mini.py encoders-marks ) > runs/mini/lane-marks-a.out 2>&1 &
marks_a=$!
( $PY tools/train_mini.py vae-marks && $PY tools/train_mini.py vae-marks --steps 2700 ) > runs/mini/lane-marks-b.out 2>&1
wait $marks_a
$PY tools/train_mini.py unet-marks --threads 2 > runs/mini/lane-marks.out 2>&1
$PY tools/train_mini.py llm-subjects --threads 2 >> runs/mini/lane-marks.out 2>&1
$PY tools/train_mini.py unet-marks --steps 4000 --threads 2 >> runs/mini/lane-marks.out 2>&1  # resumed, as trained
# the image decoder again, with 16x16 latents (the LLM's feature space is unchanged, so nothing else retrains)
$PY tools/train_mini.py vae-fine --threads 2 > runs/mini/lane-fine.out 2>&1
$PY tools/train_mini.py unet-fine --threads 2 >> runs/mini/lane-fine.out 2>&1
$PY tools/train_mini.py vae-fine-edges --threads 2 >> runs/mini/lane-fine.out 2>&1
$PY tools/train_mini.py unet-fine-robust --threads 2 >> runs/mini/lane-fine.out 2>&1
# the video and audio UNets continue on noisy conditions, as the image one did (the LLM's features are not a render's)
$PY tools/train_mini.py unet-video-robust --threads 2 > runs/mini/lane-robust.out 2>&1
$PY tools/train_mini.py unet-audio-robust --threads 2 >> runs/mini/lane-robust.out 2>&1
# the LLM once more, in-context video edits weighted up (most of their misses were the LLM's after the above), then
# the LoRA of a skill the model never saw on the final LLM
$PY tools/train_mini.py llm-video-edits --threads 2 > runs/mini/lane-llm.out 2>&1
# and on in-context video edits of diamonds and squares (large diamonds were written as diamond/square blends)
$PY tools/train_mini.py llm-video-shapes --threads 2 >> runs/mini/lane-llm.out 2>&1
$PY tools/train_mini.py lora --threads 2 > runs/mini/lane-lora.out 2>&1
# the video UNet once more, on the finished LLM's own features for trained clips (half its conditions), some
# conditions blended with a clip one change apart
$PY tools/train_mini.py unet-video-own --threads 2 > runs/mini/lane-own.out 2>&1
# after the LLM stages above, as trained: they read pictures the image decoder drew before it (own-output pools)
$PY tools/train_mini.py unet-fine-blend --threads 2 > runs/mini/lane-blend.out 2>&1
# the LLM on 3-shot in-context video edits of diamonds (held-out ones drifted toward squares with each shot), then
# the LoRA again: the LLM stage clears the adapter
$PY tools/train_mini.py llm-video-diamonds --threads 2 > runs/mini/lane-diamonds.out 2>&1
$PY tools/train_mini.py lora --threads 2 --runs runs/mini/lora-again >> runs/mini/lane-diamonds.out 2>&1
# the image UNet with 2000 subjects in colours outside the world's six: held-out subjects (a colour, mark and shape
# it never saw together) were drawn less faithfully than trained ones
$PY tools/train_mini.py unet-fine-palette --threads 2 > runs/mini/lane-palette.out 2>&1
echo "all stages done"
