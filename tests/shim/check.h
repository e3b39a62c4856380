/*
 * A Check-compatible subset, for builds where the Check library is not
 * available (the musl build of CI: Debian ships Check for glibc only).
 * It covers what the suites use: suites, test cases, checked fixtures,
 * loop tests, timeouts, the ck_assert family.  Every test runs in a child
 * process (Check's CK_FORK=yes; CK_FORK=no runs them in-process), killed
 * after its timeout (tcase_set_timeout, CK_DEFAULT_TIMEOUT).  Output: a
 * line per failure and Check's summary line.
 */
#ifndef DIO_CHECK_SHIM_H
#define DIO_CHECK_SHIM_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TTest {
	const char *name;
	void (*fn)(int);
	const char *file;
	int line;
} TTest;
typedef struct Suite Suite;
typedef struct TCase TCase;
typedef struct SRunner SRunner;
typedef void (*SFun)(void);
enum print_output { CK_SILENT, CK_MINIMAL, CK_NORMAL, CK_VERBOSE };

#define START_TEST(name)                                                              \
	static void name##_fn(int _i);                                                \
	static const TTest name##_ttest = { #name, name##_fn, __FILE__, __LINE__ };  \
	static const TTest *name = &name##_ttest;                                      \
	static void name##_fn(int _i __attribute__((unused)))
#define END_TEST

Suite *suite_create(const char *name);
TCase *tcase_create(const char *name);
void suite_add_tcase(Suite *s, TCase *tc);
void ck_shim_add_test(TCase *tc, const TTest *t, int start, int end);
#define tcase_add_test(tc, t) ck_shim_add_test((tc), (t), 0, 1)
#define tcase_add_loop_test(tc, t, s, e) ck_shim_add_test((tc), (t), (s), (e))
void tcase_add_checked_fixture(TCase *tc, SFun setup, SFun teardown);
void tcase_set_timeout(TCase *tc, double seconds);
SRunner *srunner_create(Suite *s);
void srunner_run_all(SRunner *sr, enum print_output mode);
int srunner_ntests_failed(SRunner *sr);
void srunner_free(SRunner *sr);

void ck_shim_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
/* "Assertion 'EXPR' failed: " then the caller's message */
void ck_shim_fail_expr(const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

#define ck_abort_msg(...) ck_shim_fail(__FILE__, __LINE__, __VA_ARGS__)
#define ck_assert_msg(expr, ...)                                                      \
	do {                                                                          \
		if (!(expr))                                                          \
			ck_shim_fail_expr(__FILE__, __LINE__, #expr, __VA_ARGS__);   \
	} while (0)
#define ck_assert(expr) ck_assert_msg(expr, "%s", "")

#define CK_SHIM_CMP(X, OP, Y, T, F)                                                   \
	do {                                                                          \
		T ck_x_ = (T)(X), ck_y_ = (T)(Y);                                     \
		if (!(ck_x_ OP ck_y_))                                                \
			ck_shim_fail(__FILE__, __LINE__, "Assertion '%s' failed: %s == %" F ", %s == %" F, \
				     #X " " #OP " " #Y, #X, ck_x_, #Y, ck_y_);         \
	} while (0)
#define ck_assert_int_eq(X, Y) CK_SHIM_CMP(X, ==, Y, intmax_t, PRIdMAX)
#define ck_assert_int_ne(X, Y) CK_SHIM_CMP(X, !=, Y, intmax_t, PRIdMAX)
#define ck_assert_int_lt(X, Y) CK_SHIM_CMP(X, <, Y, intmax_t, PRIdMAX)
#define ck_assert_int_le(X, Y) CK_SHIM_CMP(X, <=, Y, intmax_t, PRIdMAX)
#define ck_assert_int_gt(X, Y) CK_SHIM_CMP(X, >, Y, intmax_t, PRIdMAX)
#define ck_assert_int_ge(X, Y) CK_SHIM_CMP(X, >=, Y, intmax_t, PRIdMAX)
#define ck_assert_uint_eq(X, Y) CK_SHIM_CMP(X, ==, Y, uintmax_t, PRIuMAX)
#define ck_assert_uint_ne(X, Y) CK_SHIM_CMP(X, !=, Y, uintmax_t, PRIuMAX)
#define ck_assert_uint_lt(X, Y) CK_SHIM_CMP(X, <, Y, uintmax_t, PRIuMAX)
#define ck_assert_uint_le(X, Y) CK_SHIM_CMP(X, <=, Y, uintmax_t, PRIuMAX)
#define ck_assert_uint_gt(X, Y) CK_SHIM_CMP(X, >, Y, uintmax_t, PRIuMAX)
#define ck_assert_uint_ge(X, Y) CK_SHIM_CMP(X, >=, Y, uintmax_t, PRIuMAX)
#define ck_assert_ptr_null(X) ck_assert_msg((X) == NULL, "%s is not NULL", #X)
#define ck_assert_ptr_nonnull(X) ck_assert_msg((X) != NULL, "%s is NULL", #X)
#define ck_assert_ptr_eq(X, Y)                                                        \
	ck_assert_msg((const void *)(X) == (const void *)(Y), "%s == %s: %p, %p", #X, #Y, \
		      (const void *)(X), (const void *)(Y))
#define ck_assert_ptr_ne(X, Y)                                                        \
	ck_assert_msg((const void *)(X) != (const void *)(Y), "%s != %s: both %p", #X, #Y, \
		      (const void *)(X))
#define ck_assert_str_eq(X, Y)                                                        \
	do {                                                                          \
		const char *ck_a_ = (X), *ck_b_ = (Y);                                \
		if (strcmp(ck_a_, ck_b_))                                             \
			ck_shim_fail(__FILE__, __LINE__, "Assertion '%s == %s' failed: \"%s\", \"%s\"", #X, #Y, \
				     ck_a_, ck_b_);                                    \
	} while (0)
#define ck_assert_str_ne(X, Y)                                                        \
	do {                                                                          \
		const char *ck_a_ = (X), *ck_b_ = (Y);                                \
		if (!strcmp(ck_a_, ck_b_))                                            \
			ck_shim_fail(__FILE__, __LINE__, "Assertion '%s != %s' failed: \"%s\"", #X, #Y, ck_a_); \
	} while (0)

#endif
