// What the runtime hands a backend about one engine.
#pragma once

#include <memory>

#include "backends/backend.h"
#include "gptrt/engine.h"

namespace gptrt {

/// The engine's plan, info, profile maxima and an owner that keeps them alive.
backends::PlanRef plan_ref(const std::shared_ptr<const Engine>& engine);

}  // namespace gptrt
