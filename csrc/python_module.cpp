// The Python module fastrnn._C is empty: importing it loads this library, whose static
// initialisers register the operators (ops.cpp) and their kernels (cpu/, cuda/).
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
