/*
 * The runner of the Check-compatible shim (check.h says what it covers).
 */
#include "check.h"
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <sys/wait.h>

struct entry {
	const TTest *t;
	int start, end;
};

struct TCase {
	const char *name;
	struct entry *tests;
	int n;
	SFun setup, teardown;
	double timeout;
	TCase *next;
};

struct Suite {
	const char *name;
	TCase *first, *last;
};

struct SRunner {
	Suite *s;
	int run, failed;
};

Suite *suite_create(const char *name)
{
	Suite *s = calloc(1, sizeof(*s));
	s->name = name;
	return s;
}

TCase *tcase_create(const char *name)
{
	TCase *tc = calloc(1, sizeof(*tc));
	const char *d = getenv("CK_DEFAULT_TIMEOUT");
	tc->name = name;
	tc->timeout = d ? atof(d) : 4;
	return tc;
}

void suite_add_tcase(Suite *s, TCase *tc)
{
	if (s->last)
		s->last->next = tc;
	else
		s->first = tc;
	s->last = tc;
}

void ck_shim_add_test(TCase *tc, const TTest *t, int start, int end)
{
	tc->tests = realloc(tc->tests, (size_t)(tc->n + 1) * sizeof(*tc->tests));
	tc->tests[tc->n++] = (struct entry){ t, start, end };
}

void tcase_add_checked_fixture(TCase *tc, SFun setup, SFun teardown)
{
	tc->setup = setup;
	tc->teardown = teardown;
}

void tcase_set_timeout(TCase *tc, double seconds)
{
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tc->timeout = seconds;
}

static const char *current;   /* the test running, for messages */

/* A failed check: its line on stderr, and the test's process ends. */
__attribute__((noreturn)) static void vfail(const char *file, int line, const char *expr, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s:%d:F:%s: ", file, line, current ? current : "?");
	if (expr)
		fprintf(stderr, "Assertion '%s' failed: ", expr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(1);
}

void ck_shim_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, NULL, fmt, ap);
}

void ck_shim_fail_expr(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, expr, fmt, ap);
}

static void run_one(TCase *tc, const TTest *t, int i)
{
	current = t->name;
	if (tc->setup)
		tc->setup();
	t->fn(i);
	if (tc->teardown)
		tc->teardown();
}

SRunner *srunner_create(Suite *s)
{
	SRunner *sr = calloc(1, sizeof(*sr));
	sr->s = s;
	return sr;
}

void srunner_run_all(SRunner *sr, enum print_output mode)
{
	const char *fk = getenv("CK_FORK");
	int nofork = fk && !strcmp(fk, "no");
	if (mode != CK_SILENT)
		printf("Running suite(s): %s\n", sr->s->name);
	fflush(stdout);
	for (TCase *tc = sr->s->first; tc; tc = tc->next) {
		for (int k = 0; k < tc->n; k++) {
			struct entry *e = &tc->tests[k];
			for (int i = e->start; i < e->end; i++) {
				sr->run++;
				if (nofork) {
					run_one(tc, e->t, i);   /* a failure ends the process */
					continue;
				}
				pid_t pid = fork();
				if (pid == 0) {
					alarm((unsigned)(tc->timeout + 0.999));
					run_one(tc, e->t, i);
					fflush(NULL);
					_exit(0);
				}
				int st = 0;
				waitpid(pid, &st, 0);
				if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
					continue;
				sr->failed++;
				if (WIFSIGNALED(st))
					fprintf(stderr, "%s:%d:E:%s: %s (signal %d)\n", e->t->file, e->t->line, e->t->name,
						WTERMSIG(st) == SIGALRM ? "test timeout expired" : "test died",
						WTERMSIG(st));
			}
		}
	}
	if (mode != CK_SILENT)
		printf("%d%%: Checks: %d, Failures: %d, Errors: 0\n",
		       sr->run ? 100 * (sr->run - sr->failed) / sr->run : 100, sr->run, sr->failed);
}

int srunner_ntests_failed(SRunner *sr)
{
	return sr->failed;
}

void srunner_free(SRunner *sr)
{
	for (TCase *tc = sr->s->first, *nx; tc; tc = nx) {
		nx = tc->next;
		free(tc->tests);
		free(tc);
	}
	free(sr->s);
	free(sr);
}
