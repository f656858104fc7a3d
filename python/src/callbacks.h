// A Python callable that gptrt's own threads may call and drop: the GIL is taken for both.
#pragma once

#include <nanobind/nanobind.h>

#include <utility>

namespace gptrt::python {

class PyCallback {
 public:
  explicit PyCallback(nanobind::object f) : f_(new nanobind::object(std::move(f))) {}
  PyCallback(const PyCallback&) = delete;
  PyCallback& operator=(const PyCallback&) = delete;
  ~PyCallback() {
    nanobind::gil_scoped_acquire gil;
    delete f_;
  }
  bool empty() const { return !f_->is_valid() || f_->is_none(); }
  /// Calls it with the GIL held; an exception it raises is printed (sys.excepthook-style) and
  /// reported as `false` (the caller stops what it was doing).
  template <typename... Args>
  bool operator()(Args&&... args) const {
    nanobind::gil_scoped_acquire gil;
    try {
      nanobind::object r = (*f_)(std::forward<Args>(args)...);
      return r.is_none() || nanobind::cast<bool>(r);
    } catch (nanobind::python_error& e) {
      e.restore();
      PyErr_Print();
      return false;
    }
  }

 private:
  nanobind::object* f_;
};

}  // namespace gptrt::python
