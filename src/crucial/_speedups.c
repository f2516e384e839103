/* crucial._speedups: the per-call pieces of crucial/protocol.py in C.
 *
 * An optional accelerator: setup.py builds it when a C compiler and the
 * Python headers are there (Extension(optional=True): no compiler, no
 * failure), and crucial.protocol uses it unless CRUCIAL_PURE_PYTHON is set.
 * Every function here has a pure-Python twin in protocol.py, and the tests
 * run the protocol tests against both (tests/test_speedups.py).
 *
 *   is_plain(obj)                     protocol._plain: may pickle write it (no cloudpickle)?
 *   encode_frame(kind, req_id, body)  protocol.encode_frame: the 13-byte header and the body
 *   split_frames(buf, max, kinds)     FrameDecoder.feed's loop: whole frames out of a bytearray
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define HEADER 13
#define MAX_DEPTH 3

static PyObject *frame_type = NULL; /* protocol.Frame, set by set_frame_type() */
static PyObject *too_large = NULL;  /* protocol's FrameTooLargeError, set by set_frame_type() */
static PyObject *protocol_error = NULL;

/* ------------------------------------------------------------------ is_plain */

static int numpy_plain(PyObject *obj, PyTypeObject *t)
{
    /* NumPy arrays of numbers and NumPy scalars, by type name (numpy is not imported) */
    const char *name = t->tp_name; /* "numpy.ndarray", "numpy.float64" ... */
    if (strncmp(name, "numpy.", 6) != 0)
        return 0;
    name += 6;
    if (strcmp(name, "ndarray") == 0) {
        PyObject *dtype = PyObject_GetAttrString(obj, "dtype");
        if (dtype == NULL) {
            PyErr_Clear();
            return 0;
        }
        PyObject *hasobject = PyObject_GetAttrString(dtype, "hasobject");
        Py_DECREF(dtype);
        if (hasobject == NULL) {
            PyErr_Clear();
            return 0;
        }
        int plain = hasobject == Py_False;
        Py_DECREF(hasobject);
        return plain;
    }
    static const char *scalars[] = {"float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                    "uint64", "uint32", "uint16", "uint8", "bool", "bool_", "complex128",
                                    "complex64", "longlong", "ulonglong", "longdouble", "clongdouble",
                                    "timedelta64", NULL};
    for (const char **s = scalars; *s; s++)
        if (strcmp(name, *s) == 0)
            return 1;
    return 0;
}

static int scalar(PyTypeObject *t)
{
    return t == &PyBytes_Type || t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           t == &PyBool_Type || t == Py_TYPE(Py_None) || t == &PyByteArray_Type || t == &PyComplex_Type;
}

static int plain(PyObject *obj, int depth)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (scalar(t))
        return 1;
    if (depth > MAX_DEPTH)
        return 0;
    if (t == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(obj);
        for (Py_ssize_t i = 0; i < n; i++)
            if (!plain(PyTuple_GET_ITEM(obj, i), depth + 1))
                return 0;
        return 1;
    }
    if (t == &PyList_Type) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(obj); i++)
            if (!plain(PyList_GET_ITEM(obj, i), depth + 1))
                return 0;
        return 1;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(obj, &pos, &k, &v))
            if (!scalar(Py_TYPE(k)) || !plain(v, depth + 1))
                return 0;
        return 1;
    }
    return numpy_plain(obj, t);
}

static PyObject *is_plain(PyObject *self, PyObject *obj)
{
    return PyBool_FromLong(plain(obj, 0));
}

/* ------------------------------------------------------------------ frames */

static void put_header(unsigned char *p, unsigned long long length, unsigned int kind, unsigned long long req_id)
{
    p[0] = (unsigned char)(length >> 24);
    p[1] = (unsigned char)(length >> 16);
    p[2] = (unsigned char)(length >> 8);
    p[3] = (unsigned char)length;
    p[4] = (unsigned char)kind;
    for (int i = 0; i < 8; i++)
        p[5 + i] = (unsigned char)(req_id >> (56 - 8 * i));
}

static PyObject *encode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "encode_frame(kind, req_id, body=b'')");
        return NULL;
    }
    unsigned long kind = PyLong_AsUnsignedLong(args[0]);
    if (kind == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long req_id = PyLong_AsUnsignedLongLong(args[1]);
    if (req_id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (kind > 255) {
        PyErr_SetString(PyExc_OverflowError, "frame kind out of range");
        return NULL;
    }
    Py_buffer body = {0};
    if (nargs == 3 && PyObject_GetBuffer(args[2], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((unsigned long long)body.len > 0xFFFFFFFFULL) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_OverflowError, "frame body longer than 4 GiB");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER + body.len);
    if (out != NULL) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
        put_header(p, (unsigned long long)body.len, (unsigned int)kind, req_id);
        if (body.len)
            memcpy(p + HEADER, body.buf, body.len);
    }
    if (nargs == 3)
        PyBuffer_Release(&body);
    return out;
}

static PyObject *split_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* split_frames(buf: bytearray, max_frame_size, kinds: frozenset) -> (frames, consumed) */
    if (nargs != 3 || !PyByteArray_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "split_frames(buf: bytearray, max_frame_size, kinds)");
        return NULL;
    }
    if (frame_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "crucial._speedups: set_frame_type() was not called");
        return NULL;
    }
    unsigned long long limit = PyLong_AsUnsignedLongLong(args[1]);
    if (limit == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *kinds = args[2];
    const unsigned char *buf = (const unsigned char *)PyByteArray_AS_STRING(args[0]);
    Py_ssize_t size = PyByteArray_GET_SIZE(args[0]);
    PyObject *frames = PyList_New(0);
    if (frames == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    while (size - pos >= HEADER) {
        const unsigned char *h = buf + pos;
        unsigned long long length = ((unsigned long long)h[0] << 24) | ((unsigned long long)h[1] << 16) |
                                    ((unsigned long long)h[2] << 8) | h[3];
        unsigned int kind = h[4];
        unsigned long long req_id = 0;
        for (int i = 0; i < 8; i++)
            req_id = (req_id << 8) | h[5 + i];
        if (length > limit) {
            PyObject *exc = PyObject_CallFunction(too_large, "KK", length, limit);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            Py_DECREF(frames);
            return NULL;
        }
        PyObject *k = PyLong_FromUnsignedLong(kind);
        if (k == NULL)
            goto fail;
        int known = PySet_Contains(kinds, k);
        if (known <= 0) {
            Py_DECREF(k);
            if (known == 0)
                PyErr_Format(protocol_error, "unknown frame kind %u", kind);
            goto fail;
        }
        if ((unsigned long long)(size - pos - HEADER) < length) {
            Py_DECREF(k);
            break;
        }
        PyObject *body = PyBytes_FromStringAndSize((const char *)h + HEADER, (Py_ssize_t)length);
        PyObject *rid = PyLong_FromUnsignedLongLong(req_id);
        PyObject *frame = NULL;
        if (body != NULL && rid != NULL)
            frame = PyObject_CallFunctionObjArgs(frame_type, k, rid, body, NULL);
        Py_DECREF(k);
        Py_XDECREF(body);
        Py_XDECREF(rid);
        if (frame == NULL)
            goto fail;
        int appended = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (appended < 0)
            goto fail;
        pos += HEADER + (Py_ssize_t)length;
    }
    return Py_BuildValue("(Nn)", frames, pos);
fail:
    Py_DECREF(frames);
    return NULL;
}

static PyObject *set_frame_type(PyObject *self, PyObject *args)
{
    PyObject *frame, *large, *proto;
    if (!PyArg_ParseTuple(args, "OOO", &frame, &large, &proto))
        return NULL;
    Py_XSETREF(frame_type, Py_NewRef(frame));
    Py_XSETREF(too_large, Py_NewRef(large));
    Py_XSETREF(protocol_error, Py_NewRef(proto));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"is_plain", is_plain, METH_O, "Whether pickle may write obj (builtin scalars, containers, NumPy numbers)."},
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL, "Header plus body."},
    {"split_frames", (PyCFunction)(void (*)(void))split_frames, METH_FASTCALL, "(frames, consumed) of a bytearray."},
    {"set_frame_type", set_frame_type, METH_VARARGS, "The Frame type and the exceptions to raise."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "crucial._speedups", "crucial's optional C accelerator.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
