"""Class probabilities of images from a model `client export` wrote, with ONNX Runtime alone: the
preprocessing comes from the model's own metadata (image_size, mean, std, layout, classes).

    python onnx_predict.py model.onnx IMAGE...      (prints one JSON object per image)

This is what a user outside Easel writes; the export tests compare its output with
`client predict` on the same images.
"""

import json
import sys

import numpy as np
import onnxruntime
from PIL import Image, ImageOps


def main(model_path, image_paths):
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["classes"])
    height, width = json.loads(meta["image_size"])
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32).reshape(3, 1, 1)
    std = np.array(json.loads(meta["std"]), dtype=np.float32).reshape(3, 1, 1)
    assert meta["layout"] == "NCHW", meta["layout"]
    batch = []
    for path in image_paths:
        # Upright as the camera meant it (EXIF orientation), as Easel reads images.
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        batch.append((pixels - mean) / std)
    input_name = session.get_inputs()[0].name
    (probabilities,) = session.run(None, {input_name: np.stack(batch).astype(np.float32)})
    for path, row in zip(image_paths, probabilities):
        ranked = sorted(range(len(classes)), key=lambda i: -row[i])
        print(json.dumps({
            "path": path,
            "class": classes[ranked[0]],
            "probabilities": {classes[i]: float(row[i]) for i in range(len(classes))},
        }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
