import keras, numpy as np
from tests.test_peft_integration import *
model, backbone = make_model()
enable_lora(backbone, rank=2)
optimizer = DiscriminativeLR(keras.optimizers.Adam(1e-2), multipliers={"low": 0.0, "high": 0.5}, groups=backbone)
model.compile(optimizer=optimizer, loss=LOSS)
model.fit(X, Y, epochs=1, verbose=0)
print(optimizer.get_multipliers())
print([v.path for v in model.trainable_weights])
