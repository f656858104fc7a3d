// Definitions the fused ops share between the reference kernels and the fast backends.
#pragma once

#include <string>

#include "gptrt/error.h"
#include "gptrt/tensor.h"

namespace gptrt::reference {

/// Linear activations (attribute "activation").
enum Activation : int { kActNone = 0, kActGeluTanh = 1, kActGeluErf = 2 };
/// kAct* for an attribute value, or -1 for an unknown one.
int activation_from_name(const std::string& name);
/// GELU, tanh approximation ("gelu_new", GPT-2's) or exact erf form.
double gelu(double x, bool tanh_form);
/// True when element `i` of a mask (int64, int32, float32, bool, uint8, int8) is non-zero.
bool nonzero(const Tensor& t, int64_t i);

}  // namespace gptrt::reference
