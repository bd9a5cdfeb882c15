"""The same job in Keras 3 on TensorFlow's CPU build, for deploy/keras-bench.sh.

  python keras_baseline.py --data DIR --model small_cnn|vgg16_frozen --side 150 --batch 32
                           --epochs 3 [--threads N]

What a user of the write-up runs: image_dataset_from_directory (20 % validation), rescaling in
the model, the small CNN (conv32-pool-conv64-pool, dense 64/128) with Adam, or VGG16's conv base
frozen (random weights: nothing can be downloaded here, and the time does not depend on them)
under the 32-64-128-64 dense head with SGD momentum 0.9. Prints one JSON line: the seconds of
each epoch (training and validation, as Keras reports an epoch).
"""

import argparse
import json
import os
import time


def build(keras, model, side, classes):
    layers = keras.layers
    inputs = keras.Input((side, side, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    if model == "small_cnn":
        for width in (32, 64):
            x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D()(x)
        widths, optimizer = (64, 128), keras.optimizers.Adam(1e-3)
    else:
        base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(side, side, 3))
        base.trainable = False
        x = base(x, training=False)
        widths, optimizer = (32, 64, 128, 64), keras.optimizers.SGD(1e-3, momentum=0.9)
    x = layers.Flatten()(x)
    for width in widths:
        x = layers.Dense(width, activation="relu")(x)
        x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(classes)(x)
    network = keras.Model(inputs, outputs)
    network.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return network


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--side", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    train, validation = keras.utils.image_dataset_from_directory(
        args.data, validation_split=0.2, subset="both", seed=7,
        image_size=(args.side, args.side), batch_size=args.batch,
    )
    classes = len(train.class_names)
    network = build(keras, args.model, args.side, classes)

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    times = EpochTimes()
    network.fit(train, validation_data=validation, epochs=args.epochs, callbacks=[times], verbose=0)
    print(json.dumps({"epoch_seconds": times.seconds, "threads": args.threads}))


if __name__ == "__main__":
    main()
