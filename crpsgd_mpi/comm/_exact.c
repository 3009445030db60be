/* The exact sum's three steps in one pass each (see exact.py for the arithmetic and its guarantee). Only integer
 * operations, exact scalings by powers of two, truncations and int <-> float conversions, with floating-point
 * contraction off: every bit is fixed by IEEE 754 and C, equal to the numpy reference in exact.py on any CPU. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define NONFINITE (2 * 2047)

static inline int64_t code_of(double x) {
    uint64_t b;
    memcpy(&b, &x, 8);
    return (int64_t)((b >> 51) & 0xFFE) | (int64_t)(b != 0x8000000000000000ULL);
}

static inline double pow2(int64_t e) { /* 2^e for e in [-1022, 1023] */
    uint64_t b = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &b, 8);
    return d;
}

static inline double scale(double x, int64_t t) { /* x * 2^t in two exact steps, |t| <= 2044 */
    int64_t h = t / 2;
    return x * pow2(h) * pow2(t - h);
}

static inline int64_t shift_of(int64_t code, int64_t KW) {
    int64_t f = code >> 1;
    if (f < 1) f = 1;
    int64_t s = KW - (f - 1022);
    return s < 1074 ? s : 1074;
}

static inline double element(const void *rows, int is32, Py_ssize_t i) {
    return is32 ? (double)((const float *)rows)[i] : ((const double *)rows)[i];
}

static int buffers(PyObject *const *args, Py_ssize_t n, Py_buffer *views, const int *writable) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int flags = PyBUF_C_CONTIGUOUS | (writable[i] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[i], &views[i], flags) < 0) {
            for (Py_ssize_t j = 0; j < i; j++) PyBuffer_Release(&views[j]);
            return -1;
        }
    }
    return 0;
}

static void release(Py_buffer *views, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) PyBuffer_Release(&views[i]);
}

static void do_codes(const void *rows, int is32, Py_ssize_t k, Py_ssize_t m, int16_t *code) {
    for (Py_ssize_t j = 0; j < m; j++) code[j] = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        for (Py_ssize_t j = 0; j < m; j++) {
            int16_t c = (int16_t)code_of(element(rows, is32, i * m + j));
            if (c > code[j]) code[j] = c;
        }
}

/* One row of addends onto the grid, added into the words: x * a[j] * b[j] = x 2^t exactly (or far below the grid,
 * where it truncates to 0 either way); a conversion to int64 truncates toward zero (|r| < 2^62 here). */
#define ENCODE_ROW(LOAD)                                                                                             \
    for (Py_ssize_t j = 0; j < m; j++) {                                                                             \
        double x = (LOAD);                                                                                           \
        if (checked && x - x != 0.0) x = 0.0; /* infinity or NaN: the element's result is NaN */                    \
        double r = x * fa[j] * fb[j];                                                                                \
        int64_t w = (int64_t)r;                                                                                      \
        words[j] += w;                                                                                               \
        if (K == 2) words[m + j] += (int64_t)((r - (double)w) * wW);                                                 \
    }

static void do_encode(const void *rows, int is32, Py_ssize_t k, Py_ssize_t m, const int16_t *code, int64_t W,
                      int64_t K, int64_t *words, double *fa, double *fb) {
    const double wW = pow2(W);
    int checked = 0;
    for (Py_ssize_t j = 0; j < K * m; j++) words[j] = 0;
    for (Py_ssize_t j = 0; j < m; j++) { /* the scaling of each element, once for all rows */
        int64_t t = shift_of(code[j], K * W) - (K == 2 ? W : 0);
        int64_t h = t / 2;
        fa[j] = pow2(h);
        fb[j] = pow2(t - h);
        checked |= code[j] >= NONFINITE;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        if (is32) {
            const float *row = (const float *)rows + i * m;
            ENCODE_ROW((double)row[j])
        } else {
            const double *row = (const double *)rows + i * m;
            ENCODE_ROW(row[j])
        }
    }
}

static inline int bitlen(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

static void do_decode(const int64_t *words, const int16_t *code, Py_ssize_t m, int64_t W, int64_t K, int is32,
                      void *out) {
    for (Py_ssize_t j = 0; j < m; j++) {
        int64_t s = shift_of(code[j], K * W);
        double v;
        if (K == 1) {
            int64_t t = words[j];
            int neg = t < 0;
            uint64_t mag = neg ? (uint64_t)(-t) : (uint64_t)t;
            int drop = bitlen(mag) - 53;
            if (drop < 0) drop = 0;
            uint64_t top = (mag >> drop) | (uint64_t)((mag & ((1ULL << drop) - 1)) != 0);
            v = scale((double)top, drop - s);
            if (neg) v = -v;
        } else {
            /* branch-free: signs are random, and mispredicted branches cost more than the arithmetic */
            int64_t hi = words[j] + (words[m + j] >> W);
            int64_t lo = words[m + j] & (int64_t)((1ULL << W) - 1);
            int64_t neg = -(int64_t)(hi < 0);           /* all ones when negative */
            int64_t borrow = neg & -(int64_t)(lo != 0);
            int64_t mh = (hi ^ neg) - neg + borrow;     /* |hi| - 1 when borrowing */
            int64_t ml = lo ^ (borrow & (lo ^ ((((int64_t)1) << W) - lo)));
            int64_t kk = 62 - bitlen((uint64_t)mh);
            kk = kk < 0 ? 0 : kk;
            kk = kk > W ? W : kk;
            int64_t drop = W - kk;
            int64_t top = (int64_t)((uint64_t)mh << kk) | (ml >> drop);
            top |= (ml & (((int64_t)1 << drop) - 1)) != 0;
            v = scale((double)top, drop - s);
            uint64_t vb;
            memcpy(&vb, &v, 8);
            vb |= (uint64_t)neg & 0x8000000000000000ULL;
            memcpy(&v, &vb, 8);
        }
        if (code[j] == 0) v = -0.0;
        if (code[j] >= NONFINITE) v = NAN;
        if (is32) ((float *)out)[j] = (float)v;
        else ((double *)out)[j] = v;
    }
}

/* codes(rows, k, m, is32, code) */
static PyObject *py_codes(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    static const int wr[] = {0, 1};
    PyObject *objs[2] = {args[0], args[4]};
    Py_buffer v[2];
    if (n != 5) { PyErr_SetString(PyExc_TypeError, "codes takes 5 arguments"); return NULL; }
    Py_ssize_t k = PyLong_AsSsize_t(args[1]), m = PyLong_AsSsize_t(args[2]);
    int is32 = PyObject_IsTrue(args[3]);
    if (PyErr_Occurred() || buffers(objs, 2, v, wr) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    do_codes(v[0].buf, is32, k, m, (int16_t *)v[1].buf);
    Py_END_ALLOW_THREADS
    release(v, 2);
    Py_RETURN_NONE;
}

/* encode(rows, k, m, is32, code, W, K, words) */
static PyObject *py_encode(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    static const int wr[] = {0, 0, 1};
    Py_buffer v[3];
    if (n != 8) { PyErr_SetString(PyExc_TypeError, "encode takes 8 arguments"); return NULL; }
    PyObject *objs[3] = {args[0], args[4], args[7]};
    Py_ssize_t k = PyLong_AsSsize_t(args[1]), m = PyLong_AsSsize_t(args[2]);
    int is32 = PyObject_IsTrue(args[3]);
    int64_t W = PyLong_AsLongLong(args[5]), K = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred() || buffers(objs, 3, v, wr) < 0) return NULL;
    double *scratch = PyMem_RawMalloc(2 * (size_t)(m > 0 ? m : 1) * sizeof(double));
    if (scratch == NULL) { release(v, 3); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    do_encode(v[0].buf, is32, k, m, (const int16_t *)v[1].buf, W, K, (int64_t *)v[2].buf, scratch, scratch + m);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch);
    release(v, 3);
    Py_RETURN_NONE;
}

/* decode(words, code, m, W, K, is32, out) */
static PyObject *py_decode(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    static const int wr[] = {0, 0, 1};
    Py_buffer v[3];
    if (n != 7) { PyErr_SetString(PyExc_TypeError, "decode takes 7 arguments"); return NULL; }
    PyObject *objs[3] = {args[0], args[1], args[6]};
    Py_ssize_t m = PyLong_AsSsize_t(args[2]);
    int64_t W = PyLong_AsLongLong(args[3]), K = PyLong_AsLongLong(args[4]);
    int is32 = PyObject_IsTrue(args[5]);
    if (PyErr_Occurred() || buffers(objs, 3, v, wr) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    do_decode((const int64_t *)v[0].buf, (const int16_t *)v[1].buf, m, W, K, is32, v[2].buf);
    Py_END_ALLOW_THREADS
    release(v, 3);
    Py_RETURN_NONE;
}

/* local(rows, k, m, is32, W, K, code, words, out): all three steps where every addend lives here */
static PyObject *py_local(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    static const int wr[] = {0, 1, 1, 1};
    Py_buffer v[4];
    if (n != 9) { PyErr_SetString(PyExc_TypeError, "local takes 9 arguments"); return NULL; }
    PyObject *objs[4] = {args[0], args[6], args[7], args[8]};
    Py_ssize_t k = PyLong_AsSsize_t(args[1]), m = PyLong_AsSsize_t(args[2]);
    int is32 = PyObject_IsTrue(args[3]);
    int64_t W = PyLong_AsLongLong(args[4]), K = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred() || buffers(objs, 4, v, wr) < 0) return NULL;
    double *scratch = PyMem_RawMalloc(2 * (size_t)(m > 0 ? m : 1) * sizeof(double));
    if (scratch == NULL) { release(v, 4); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    do_codes(v[0].buf, is32, k, m, (int16_t *)v[1].buf);
    do_encode(v[0].buf, is32, k, m, (const int16_t *)v[1].buf, W, K, (int64_t *)v[2].buf, scratch, scratch + m);
    do_decode((const int64_t *)v[2].buf, (const int16_t *)v[1].buf, m, W, K, is32, v[3].buf);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch);
    release(v, 4);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"codes", (PyCFunction)(void (*)(void))py_codes, METH_FASTCALL, "max code per element over the rows"},
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_FASTCALL, "integer words summed over the rows"},
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_FASTCALL, "the float sum, rounded once"},
    {"local", (PyCFunction)(void (*)(void))py_local, METH_FASTCALL, "the three steps over local rows"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_exact", "Compiled steps of the exact sum.", -1, methods};

PyMODINIT_FUNC PyInit__exact(void) { return PyModule_Create(&module); }
