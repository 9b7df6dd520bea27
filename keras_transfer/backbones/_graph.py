"""Re-tracing a Keras model's graph: cutting it and flattening nested models.

`retrace` calls the layers of a functional or sequential model again on new
symbolic inputs, in graph order, so the result is one flat functional graph
that shares the layers (and so the weights) of the original model. Nested
functional/sequential models are expanded into their layers; layers after the
cut are never called (they may not accept a new input shape).
"""

import keras

from keras_transfer import _compat


def is_graph_model(layer):
    """Whether `layer` is a functional or sequential model (has a graph)."""
    if isinstance(layer, keras.Sequential):
        return True
    return _compat.is_functional(layer)


def find_layer_path(model, name):
    """List of layers from `model`'s top level down to the layer `name`."""
    layers = model.layers
    for layer in layers:
        if layer.name == name:
            return [layer]
    for layer in layers:
        if is_graph_model(layer) or isinstance(layer, keras.Model):
            sub = find_layer_path(layer, name)
            if sub:
                return [layer] + sub
    return None


def all_layer_names(model):
    """Names of all layers of `model`, nested models expanded."""
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if isinstance(layer, keras.Model):
            names.extend(all_layer_names(layer))
    return names


def _ancestors(target_nodes):
    seen = {}
    stack = list(target_nodes)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(node.parent_nodes)
    return set(seen)


def retrace(model, inputs, produced, stop_layer=None):
    """Call `model`'s layers on `inputs`; return the new output (structure).

    Args:
        model: A functional or sequential Keras model.
        inputs: Symbolic tensors matching `model.inputs` (any structure).
        produced: Dict, filled with layer name -> new output, for every layer
            called (nested models expanded).
        stop_layer: Optional top-level layer of `model`. When given, only the
            layers it depends on are called, and its new output is returned.
    """
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = _call(layer, (x,), {}, produced)
            if layer is stop_layer:
                break
        return x
    flat_inputs = keras.tree.flatten(inputs)
    if len(flat_inputs) != len(model.inputs):
        raise ValueError(
            f"Model '{model.name}' expects {len(model.inputs)} inputs, "
            f"received {len(flat_inputs)}."
        )
    tensor_map = {id(x): y for x, y in zip(model.inputs, flat_inputs)}
    nodes = _compat.functional_nodes(model)
    needed = None
    stop_node = None
    if stop_layer is not None:
        own = [n for n in nodes if n.operation is stop_layer]
        if not own:
            raise ValueError(f"Layer '{stop_layer.name}' is not in '{model.name}'.")
        stop_node = own[-1]
        needed = _ancestors([stop_node])
    for node in nodes:
        if node.is_input or node.operation is None:
            continue
        if needed is not None and id(node) not in needed:
            continue
        if any(id(x) not in tensor_map for x in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensor_map)
        outputs = _call(node.operation, args, kwargs, produced)
        for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
            tensor_map[id(x)] = y
    if stop_node is not None:
        new = [tensor_map[id(x)] for x in stop_node.outputs]
        return new[0] if len(new) == 1 else new
    return keras.tree.map_structure(lambda x: tensor_map[id(x)], model.output)


def _call(operation, args, kwargs, produced):
    if is_graph_model(operation):
        # Expand a nested model: its layers join the flat graph.
        outputs = retrace(operation, args[0], produced)
    else:
        outputs = operation(*args, **kwargs)
    produced[operation.name] = outputs
    return outputs


def new_inputs_like(model, input_shape=None):
    """Fresh `keras.Input`s with the structure, names and dtypes of `model`'s."""
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"`model` '{model.name}' is a Sequential model that is not built: "
            "give it an `keras.Input` first or call `model.build(input_shape)`."
        )
    struct = model.input if _compat.is_functional(model) else model.inputs
    flat = keras.tree.flatten(struct)
    if input_shape is not None and len(flat) != 1:
        raise ValueError(
            "`input_shape` can only be given for a model with one input; "
            f"'{model.name}' has {len(flat)}. Received: input_shape={input_shape}"
        )

    def make(x):
        shape = tuple(input_shape) if input_shape is not None else tuple(x.shape[1:])
        layer_name = _compat.producing_operation(x).name
        return keras.Input(
            shape=shape,
            dtype=x.dtype,
            sparse=getattr(x, "sparse", False),
            name=layer_name,
        )

    return keras.tree.map_structure(make, struct)
