"""Deep Learning Specialization helpers with a mistake planted in each backward (a WRONG example).

This is the buggy twin of examples/dls_layers.py used by ``python -m harness selfcheck`` and
the tests: the same file, with exactly one classic learner mistake planted in each backward
function (linear_backward, relu_backward, sigmoid_backward, linear_activation_backward,
L_model_backward), each changed line marked ``# PLANTED:``. The forward functions and
compute_cost are left correct, so every difference from the correct file is a backward one.
``PLANTED`` maps each planted function to a one-line description of its mistake. The
docstrings are the correct file's, stating the right formulas, as a learner's would.

Conventions (the course's, as in examples/dls_layers.py):
- column convention: examples are columns. A^[l] is (n_l, m), W^[l] is (n_l, n_{l-1}),
  b^[l] is (n_l, 1), Z^[l] = W^[l] A^[l-1] + b^[l], and m = A.shape[1];
- ``parameters`` holds "W1", "b1", …, "WL", "bL"; layers 1..L−1 are relu, layer L is a single
  sigmoid unit, so AL is (1, m) and Y is (1, m) with entries in {0, 1};
- the signatures, return values and caches are the correct file's;
- no input array is modified in place.
"""

import numpy as np


PLANTED = {
    "linear_backward": "db = Σ_columns dZ without the 1/m (dW and dA_prev are right)",
    "relu_backward": "dZ = dA: forgets to zero dZ where Z ≤ 0",
    "sigmoid_backward": "dZ = dA · s: forgets the (1 − s) factor of σ'",
    "linear_activation_backward": "swaps the activations: relu_backward for a sigmoid layer, "
                                  "sigmoid_backward for a relu layer",
    "L_model_backward": "dAL = −(Y / AL) − (1 − Y) / (1 − AL): a sign slip on the second term",
}


# ----------------------------------------------------------------------------- activations

def _sigmoid(Z):
    """s = 1 / (1 + e^(−Z)) without overflow: e^(−|Z|) never overflows."""
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid(Z):
    """A = σ(Z) = 1 / (1 + e^(−Z)) elementwise. Returns A and cache Z."""
    A = _sigmoid(Z)
    cache = Z
    return A, cache


def relu(Z):
    """A = max(0, Z) elementwise. Returns A and cache Z."""
    A = np.maximum(0, Z)
    cache = Z
    return A, cache


def relu_backward(dA, cache):
    """dZ = dA where Z > 0, else 0 (the derivative at Z = 0 is taken to be 0)."""
    Z = cache  # noqa: F841 - read, then not used: the plant
    dZ = np.array(dA, copy=True)  # PLANTED: the dZ[Z <= 0] = 0 line is missing
    return dZ


def sigmoid_backward(dA, cache):
    """dZ = dA · σ'(Z) = dA · s (1 − s), s = σ(Z)."""
    Z = cache
    s = _sigmoid(Z)
    dZ = dA * s  # PLANTED: σ' = s (1 − s), not s
    return dZ


# ----------------------------------------------------------------------------- forward

def linear_forward(A, W, b):
    """Z = W A + b: A (n_{l-1}, m), W (n_l, n_{l-1}), b (n_l, 1) broadcast over the m columns.

    Returns Z (n_l, m) and cache (A, W, b).
    """
    Z = np.dot(W, A) + b
    cache = (A, W, b)
    return Z, cache


def linear_activation_forward(A_prev, W, b, activation):
    """A = g(W A_prev + b), g = σ ("sigmoid") or relu ("relu").

    Returns A and cache (linear_cache, activation_cache) = ((A_prev, W, b), Z).
    """
    if activation == "sigmoid":
        Z, linear_cache = linear_forward(A_prev, W, b)
        A, activation_cache = sigmoid(Z)
    elif activation == "relu":
        Z, linear_cache = linear_forward(A_prev, W, b)
        A, activation_cache = relu(Z)
    else:
        raise ValueError(f'Invalid activation "{activation}"')
    cache = (linear_cache, activation_cache)
    return A, cache


def L_model_forward(X, parameters):
    """[LINEAR → RELU] × (L − 1) → LINEAR → SIGMOID, from A^[0] = X (n_x, m).

    L = len(parameters) // 2. Returns AL = A^[L] (1, m) and caches, the list of the L
    layers' caches from linear_activation_forward (caches[l − 1] is layer l's).
    """
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L):
        A_prev = A
        A, cache = linear_activation_forward(A_prev, parameters["W" + str(l)],
                                             parameters["b" + str(l)], activation="relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters["W" + str(L)],
                                          parameters["b" + str(L)], activation="sigmoid")
    caches.append(cache)
    return AL, caches


# ----------------------------------------------------------------------------- cost

def compute_cost(AL, Y):
    """Cross-entropy J = −(1/m) Σ (Y log AL + (1 − Y) log(1 − AL)), m = Y.shape[1].

    AL and Y are (1, m); AL must be strictly between 0 and 1 (as in the notebook, there is
    no clipping). Returns J squeezed to a scalar (np.squeeze).
    """
    m = Y.shape[1]
    cost = (-1 / m) * np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL))
    cost = np.squeeze(cost)
    return cost


# ----------------------------------------------------------------------------- backward

def linear_backward(dZ, cache):
    """For Z = W A_prev + b: dW = (1/m) dZ A_prevᵀ, db = (1/m) Σ_columns dZ (n_l, 1),
    dA_prev = Wᵀ dZ, with m = A_prev.shape[1]. Returns (dA_prev, dW, db)."""
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1 / m * np.dot(dZ, A_prev.T)
    db = np.sum(dZ, axis=1, keepdims=True)  # PLANTED: the 1/m is missing
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    """dZ = dA · g'(Z) (relu_backward or sigmoid_backward, as the layer's activation), then
    linear_backward. Returns (dA_prev, dW, db)."""
    linear_cache, activation_cache = cache
    if activation == "relu":
        dZ = sigmoid_backward(dA, activation_cache)  # PLANTED: the other activation's backward
        dA_prev, dW, db = linear_backward(dZ, linear_cache)
    elif activation == "sigmoid":
        dZ = relu_backward(dA, activation_cache)  # PLANTED: the other activation's backward
        dA_prev, dW, db = linear_backward(dZ, linear_cache)
    else:
        raise ValueError(f'Invalid activation "{activation}"')
    return dA_prev, dW, db


def L_model_backward(AL, Y, caches):
    """Backward through [LINEAR → RELU] × (L − 1) → LINEAR → SIGMOID.

    Starts from the derivative of the loss with respect to AL,
    dAL = −(Y / AL − (1 − Y) / (1 − AL)), goes through the sigmoid layer L, then the relu
    layers L − 1, …, 1. Returns grads with "dA{l-1}", "dW{l}", "db{l}" for l = 1..L.
    dW, db are ∂J/∂W, ∂J/∂b; the dA carry no 1/m (it enters in linear_backward), so they are
    gradients of the summed loss m J: grads["dA0"] = m ∂J/∂X.
    """
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(np.divide(Y, AL)) - np.divide(1 - Y, 1 - AL)  # PLANTED: − where it should be +

    current_cache = caches[L - 1]
    dA_prev_temp, dW_temp, db_temp = linear_activation_backward(dAL, current_cache, "sigmoid")
    grads["dA" + str(L - 1)] = dA_prev_temp
    grads["dW" + str(L)] = dW_temp
    grads["db" + str(L)] = db_temp

    for l in reversed(range(L - 1)):
        current_cache = caches[l]
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(grads["dA" + str(l + 1)],
                                                                    current_cache, "relu")
        grads["dA" + str(l)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads
