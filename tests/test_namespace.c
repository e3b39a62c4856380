/*
 * The namespace: create/open flags, unlink while open (space freed at
 * last close), rename as atomic replace, list by prefix in name order,
 * name limits.
 */
#include "helpers.h"

static struct dio_vol *vol;
static char *img;

static void setup(void) { vol = t_fresh("ns", 32, &img); }

static void teardown(void)
{
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
	free(img);
}

static struct dio_file *mk(const char *name, uint32_t fid, size_t len)
{
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(f);
	if (len) {
		uint8_t *b = t_aligned(len);
		t_fill(b, len, fid, 1, 0);
		ck_assert_int_eq(dio_pwrite(f, b, len, 0), (ssize_t)len);
		free(b);
	}
	return f;
}

static bool has_pat(struct dio_file *f, uint32_t fid, size_t len)
{
	uint8_t *b = t_aligned(len);
	bool ok = dio_pread(f, b, len, 0) == (ssize_t)len;
	for (size_t i = 0; ok && i < len; i++)
		ok = b[i] == t_pat(fid, 1, i);
	free(b);
	return ok;
}

START_TEST(test_open_flags_create_excl_trunc)
{
	ck_assert_ptr_null(dio_open(vol, "nope", O_RDWR));
	ck_assert_int_eq(errno, ENOENT);
	struct dio_file *f = mk("f", 1, 8192);
	ck_assert_ptr_null(dio_open(vol, "f", O_RDWR | O_CREAT | O_EXCL));
	ck_assert_int_eq(errno, EEXIST);
	struct dio_file *g = dio_open(vol, "f", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(g);
	ck_assert(has_pat(g, 1, 8192));
	dio_close(g);
	g = dio_open(vol, "f", O_WRONLY | O_TRUNC);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.size, 0);
	ck_assert_uint_eq(st.allocated, 0);
	dio_close(g);
	/* as Linux: O_TRUNC truncates even on a read-only handle */
	struct dio_file *w = mk("t", 5, 4096);
	dio_close(w);
	g = dio_open(vol, "t", O_RDONLY | O_TRUNC);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(dio_fstat(g, &st), 0);
	ck_assert_uint_eq(st.size, 0);
	dio_close(g);
	dio_close(f);
	ck_assert_ptr_null(dio_open(vol, "f", O_RDWR | O_APPEND));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dio_open(vol, "f", O_ACCMODE));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_names_are_flat_bytes_up_to_255)
{
	char name[300];
	memset(name, 'n', sizeof(name));
	name[255] = 0;
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(f);
	dio_close(f);
	name[255] = 'n';
	name[256] = 0;
	ck_assert_ptr_null(dio_open(vol, name, O_RDWR | O_CREAT));
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_int_eq(dio_unlink(vol, name), -1);
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_ptr_null(dio_open(vol, "", O_RDWR | O_CREAT));
	ck_assert_int_eq(errno, ENOENT);
	f = dio_open(vol, "a/b/../c", O_RDWR | O_CREAT);   /* '/' is an ordinary byte */
	ck_assert_ptr_nonnull(f);
	dio_close(f);
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(vol, "a/b/../c", &st), 0);
	ck_assert_int_eq(dio_stat(vol, "a/c", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(test_unlink_while_open_frees_space_at_last_close)
{
	struct dio_statvfs s0, s1, s2;
	dio_syncfs(vol);
	dio_statvfs(vol, &s0);
	struct dio_file *f = mk("u", 2, 1 << 20);
	ck_assert_int_eq(dio_unlink(vol, "u"), 0);
	ck_assert_int_eq(dio_stat(vol, "u", &(struct dio_stat){ 0 }), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert(has_pat(f, 2, 1 << 20));          /* still readable through the handle */
	ck_assert_int_eq(dio_syncfs(vol), 0);
	dio_statvfs(vol, &s1);
	ck_assert_uint_eq(s1.free_blocks, s0.free_blocks - 256);
	ck_assert_uint_eq(s1.nfiles, s0.nfiles);
	dio_close(f);
	ck_assert_int_eq(dio_syncfs(vol), 0);
	dio_statvfs(vol, &s2);
	ck_assert_uint_eq(s2.free_blocks, s0.free_blocks);
	ck_assert_int_eq(dio_unlink(vol, "u"), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(test_rename_replaces_target_atomically)
{
	struct dio_file *a = mk("a", 3, 4096);
	struct dio_file *b = mk("b", 4, 8192);
	ck_assert_int_eq(dio_rename(vol, "a", "b"), 0);
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(vol, "a", &st), -1);
	ck_assert_int_eq(dio_stat(vol, "b", &st), 0);
	ck_assert_uint_eq(st.size, 4096);
	ck_assert(has_pat(b, 4, 8192));   /* old target still open and intact */
	dio_close(a);
	dio_close(b);
	ck_assert_int_eq(dio_rename(vol, "missing", "x"), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(dio_rename(vol, "b", "b"), 0);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	ck_assert_ptr_nonnull(vol);
	struct dio_file *f = dio_open(vol, "b", O_RDONLY);
	ck_assert(has_pat(f, 3, 4096));
	dio_close(f);
	struct dio_statvfs sv;
	dio_statvfs(vol, &sv);
	ck_assert_uint_eq(sv.nfiles, 1);
}
END_TEST

struct seen { char names[16][32]; int n; int stop_at; };

static int collect(const char *name, const struct dio_stat *st, void *arg)
{
	struct seen *s = arg;
	(void)st;
	snprintf(s->names[s->n++], 32, "%s", name);
	return s->n == s->stop_at ? 42 : 0;
}

static int collect_and_mutate(const char *name, const struct dio_stat *st, void *arg)
{
	int r = collect(name, st, arg);
	/* the callback may call libdio: create names before and after */
	struct dio_file *f = dio_open(vol, "dir/a0", O_RDWR | O_CREAT);
	dio_close(f);
	if (!strcmp(name, "dir/b"))
		dio_unlink(vol, "dir/c");
	return r;
}

START_TEST(test_list_prefix_in_name_order)
{
	const char *names[] = { "dir/c", "dir/a", "other", "dir/b", "dir", "dis", "dir/ab" };
	for (unsigned i = 0; i < 7; i++)
		dio_close(mk(names[i], 10 + i, 0));
	struct seen s = { .stop_at = -1 };
	ck_assert_int_eq(dio_list(vol, "dir/", collect, &s), 0);
	ck_assert_int_eq(s.n, 4);
	ck_assert_str_eq(s.names[0], "dir/a");
	ck_assert_str_eq(s.names[1], "dir/ab");
	ck_assert_str_eq(s.names[2], "dir/b");
	ck_assert_str_eq(s.names[3], "dir/c");
	struct seen all = { .stop_at = -1 };
	ck_assert_int_eq(dio_list(vol, NULL, collect, &all), 0);
	ck_assert_int_eq(all.n, 7);
	struct seen stop = { .stop_at = 2 };
	ck_assert_int_eq(dio_list(vol, "", collect, &stop), 42);
	ck_assert_int_eq(stop.n, 2);
	struct seen mut = { .stop_at = -1 };
	ck_assert_int_eq(dio_list(vol, "dir/", collect_and_mutate, &mut), 0);
	/* present for the whole call: a, ab, b exactly once, in order;
	   dir/a0 (created during) may appear, dir/c (removed during) may not */
	const char *want[] = { "dir/a", "dir/ab", "dir/b" };
	int k = 0;
	for (int i = 0; i < mut.n; i++) {
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(mut.names[i], mut.names[j]);
		if (i)
			ck_assert_int_lt(strcmp(mut.names[i - 1], mut.names[i]), 0);
		if (k < 3 && !strcmp(mut.names[i], want[k]))
			k++;
	}
	ck_assert_int_eq(k, 3);
}
END_TEST

/* "name" for a file, "name/" for a subdirectory (st NULL) */
static int collect_level(const char *name, const struct dio_stat *st, void *arg)
{
	struct seen *s = arg;
	size_t n = strlen(name);
	ck_assert_int_eq(st == NULL, n && name[n - 1] == '/');
	snprintf(s->names[s->n++], 32, "%s", name);
	return s->n == s->stop_at ? 42 : 0;
}

START_TEST(test_listdir_shows_one_level_of_the_tree_names_make)
{
	const char *names[] = { "a", "b/x", "b/y/z", "b/y/w", "b/", "c/", "c0", "/root", "b//q", "b/y0" };
	for (unsigned i = 0; i < 10; i++)
		dio_close(mk(names[i], 10 + i, i));
	struct seen top = { .stop_at = -1 };
	ck_assert_int_eq(dio_listdir(vol, NULL, collect_level, &top), 0);
	const char *want_top[] = { "/", "a", "b/", "c/", "c0" };
	ck_assert_int_eq(top.n, 5);
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(top.names[i], want_top[i]);
	/* DIR/ itself (a marker file) is not listed in it */
	struct seen b = { .stop_at = -1 };
	ck_assert_int_eq(dio_listdir(vol, "b/", collect_level, &b), 0);
	const char *want_b[] = { "b//", "b/x", "b/y/", "b/y0" };
	ck_assert_int_eq(b.n, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(b.names[i], want_b[i]);
	struct seen y = { .stop_at = -1 };
	ck_assert_int_eq(dio_listdir(vol, "b/y/", collect_level, &y), 0);
	ck_assert_int_eq(y.n, 2);
	ck_assert_str_eq(y.names[0], "b/y/w");
	ck_assert_str_eq(y.names[1], "b/y/z");
	struct seen c = { .stop_at = -1 };
	ck_assert_int_eq(dio_listdir(vol, "c/", collect_level, &c), 0);
	ck_assert_int_eq(c.n, 0);
	struct seen stop = { .stop_at = 2 };
	ck_assert_int_eq(dio_listdir(vol, "", collect_level, &stop), 42);
	ck_assert_int_eq(stop.n, 2);
	ck_assert_int_eq(dio_listdir(vol, "b", collect_level, &stop), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_listdir(NULL, "", collect_level, &stop), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* Random creates, unlinks and renames (over existing names too) against
   a model: every name is found, each listed once in byte order, and the
   same after a remount (the checkpoint's order, the tree built from it). */
enum { MODEL_NAMES = 600 };
static bool model[MODEL_NAMES];

static void model_name(int i, char *out)
{
	/* shared prefixes and lengths that differ, as trees of names have */
	snprintf(out, 32, "d%d/%s%d", i % 7, i % 3 ? "f" : "file-", i);
}

struct walk { int n; char last[32]; bool ok; };

static int walk_one(const char *name, const struct dio_stat *st, void *arg)
{
	struct walk *w = arg;
	(void)st;
	if (w->n && strcmp(w->last, name) >= 0)
		w->ok = false;
	snprintf(w->last, sizeof(w->last), "%s", name);
	w->n++;
	return 0;
}

static void check_model(void)
{
	char name[32];
	int want = 0;
	for (int i = 0; i < MODEL_NAMES; i++) {
		model_name(i, name);
		struct dio_stat st;
		ck_assert_msg((dio_stat(vol, name, &st) == 0) == model[i], "%s", name);
		want += model[i];
	}
	struct walk w = { 0, "", true };
	ck_assert_int_eq(dio_list(vol, NULL, walk_one, &w), 0);
	ck_assert(w.ok);
	ck_assert_int_eq(w.n, want);
	struct dio_statvfs sv;
	ck_assert_int_eq(dio_statvfs(vol, &sv), 0);
	ck_assert_uint_eq(sv.nfiles, (uint64_t)want);
}

START_TEST(test_random_creates_unlinks_and_renames_keep_every_name_once_in_order)
{
	char a[32], b[32];
	for (int round = 0; round < 6000; round++) {
		int i = (int)(t_rand() % MODEL_NAMES), j = (int)(t_rand() % MODEL_NAMES);
		model_name(i, a);
		model_name(j, b);
		switch (t_rand() % 3) {
		case 0:
			if (!model[i]) {
				dio_close(mk(a, 1, 0));
				model[i] = true;
			}
			break;
		case 1:
			ck_assert_int_eq(dio_unlink(vol, a) == 0, model[i]);
			model[i] = false;
			break;
		default:
			if (model[i] && i != j) {
				ck_assert_int_eq(dio_rename(vol, a, b), 0);
				model[i] = false;
				model[j] = true;
			}
		}
		if (round % 1000 == 999)
			check_model();
	}
	check_model();
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	ck_assert_ptr_nonnull(vol);
	check_model();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("namespace");
	TCase *tc = tcase_create("namespace");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_flags_create_excl_trunc);
	tcase_add_test(tc, test_names_are_flat_bytes_up_to_255);
	tcase_add_test(tc, test_unlink_while_open_frees_space_at_last_close);
	tcase_add_test(tc, test_rename_replaces_target_atomically);
	tcase_add_test(tc, test_list_prefix_in_name_order);
	tcase_add_test(tc, test_listdir_shows_one_level_of_the_tree_names_make);
	tcase_add_test(tc, test_random_creates_unlinks_and_renames_keep_every_name_once_in_order);
	suite_add_tcase(s, tc);
	return t_run(s);
}
