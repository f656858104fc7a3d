// gptrt._gptrt: the native half of the gptrt Python package (python/gptrt/ is the other). Its
// errors are gptrt.Error (a RuntimeError) or, for shapes outside every profile and bad inputs,
// gptrt.ShapeError / gptrt.InputError (also ValueErrors), all with gptrt's own messages.
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"

namespace gptrt::python {
namespace {

// The exception types, made once; their references live as long as the process (no static
// destructor may run after the interpreter is gone).
PyObject*& error_type(ErrorCode code) {
  static PyObject *error = nullptr, *shape = nullptr, *input = nullptr;
  return code == ErrorCode::kShapeError        ? shape
         : code == ErrorCode::kInvalidArgument ? input
                                               : error;
}

NB_MODULE(_gptrt, m) {
  m.doc() = "gptrt's native module (use the gptrt package)";
  nb::object make_type = nb::module_::import_("builtins").attr("type");
  auto attrs = [](const char* doc) {
    nb::dict d;
    d["__module__"] = "gptrt";
    d["__doc__"] = doc;
    return d;
  };
  nb::object base = make_type("Error", nb::make_tuple(nb::borrow(PyExc_RuntimeError)),
                              attrs("An error gptrt reports: what, where, expected and found."));
  nb::object value_error = nb::borrow(PyExc_ValueError);
  nb::object shape =
      make_type("ShapeError", nb::make_tuple(base, value_error),
                attrs("Shapes that disagree or fall outside every optimization profile."));
  nb::object input = make_type("InputError", nb::make_tuple(base, value_error),
                               attrs("A value out of range: a token id, a flag, a dtype."));
  m.attr("Error") = base;
  m.attr("ShapeError") = shape;
  m.attr("InputError") = input;
  error_type(ErrorCode::kInternal) = base.release().ptr();
  error_type(ErrorCode::kShapeError) = shape.release().ptr();
  error_type(ErrorCode::kInvalidArgument) = input.release().ptr();
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error_type(e.code()), e.what());
    }
  });
  m.def(
      "version", [] { return std::string(version()); }, "gptrt's version, e.g. '0.1.0'.");
  m.def(
      "build_commit", [] { return std::string(build_commit()); },
      "The git commit this build came from.");
  bind_engine(m);
  bind_tokenizer(m);
  bind_generate(m);
  bind_scheduler(m);
}

}  // namespace
}  // namespace gptrt::python
