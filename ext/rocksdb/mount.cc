/*
 * The process's mounts.  A volume can be mounted by one process at a
 * time (dio_mount(3): EBUSY), and RocksDB makes a FileSystem object per
 * URI it reads, per tool, per DB: so the mount is kept here, by path,
 * and shared.  Its Mount lives while any FileSystem object or file of it
 * does; the last to go unmounts it.  At exit, a volume still mounted
 * (a program that leaked its DB or its Env) is unmounted if nothing of
 * it is open, and otherwise synced: its threads may still be using it.
 */
#include "drf.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace drf {

namespace {

std::mutex registry_mu;
/* by canonical path; weak: a Mount's owners are its users */
std::map<std::string, std::weak_ptr<Mount>> *registry;

/* DIO_ROCKSDB_COUNTERS=1: the volume's dio_counters(3) on stderr when
   it is unmounted, to see what a workload costs the device. */
void print_counters(struct dio_vol *vol, const std::string &path)
{
	const char *e = getenv("DIO_ROCKSDB_COUNTERS");
	struct dio_counters c;
	if (!e || !*e || *e == '0' || dio_counters(vol, &c) != 0)
		return;
	fprintf(stderr,
	        "libdio %s: reads %llu writes %llu bytes_read %llu bytes_written %llu device_ios %llu "
	        "bounced %llu rmw_blocks %llu journal_commits %llu flushes %llu\n",
	        path.c_str(), (unsigned long long)c.reads, (unsigned long long)c.writes,
	        (unsigned long long)c.bytes_read, (unsigned long long)c.bytes_written,
	        (unsigned long long)c.device_ios, (unsigned long long)c.bounced,
	        (unsigned long long)c.rmw_blocks, (unsigned long long)c.journal_commits,
	        (unsigned long long)c.flushes);
}

void at_exit()
{
	std::lock_guard<std::mutex> g(registry_mu);
	for (auto &e : *registry) {
		std::shared_ptr<Mount> m = e.second.lock();
		if (!m || !m->vol)
			continue;
		print_counters(m->vol, m->path);
		std::lock_guard<std::mutex> q(m->q_mu);
		for (struct dio_queue *dq : m->idle_queues)
			dio_queue_destroy(dq);
		m->idle_queues.clear();
		if (dio_umount(m->vol) == 0 || errno != EBUSY) {
			m->vol = nullptr;   /* released (dio_umount(3) releases on EIO too) */
			m->stage.reset();
		} else {
			/* files are open, their threads may run: the stage stays
			   mapped, and its slots, in shared memory, for the next mount */
			dio_syncfs(m->vol);
		}
	}
}

/* An image file's path as realpath gives it, so that two spellings of
   one volume share a mount; a path realpath cannot resolve is kept as
   given (dio_mount reports why it cannot be mounted). */
std::string canonical(const std::string &path)
{
	char buf[PATH_MAX];
	if (realpath(path.c_str(), buf))
		return buf;
	return path;
}

} // namespace

Mount::~Mount()
{
	if (vol)
		print_counters(vol, path);
	stage.reset();
	for (struct dio_queue *q : idle_queues)
		dio_queue_destroy(q);
	/* EBUSY: a handle leaked (every file holds the Mount); the volume
	   stays mounted, synced.  Any other error released it. */
	if (vol && dio_umount(vol) != 0 && errno == EBUSY)
		dio_syncfs(vol);
}

struct dio_queue *Mount::take_queue()
{
	{
		std::lock_guard<std::mutex> g(q_mu);
		if (!idle_queues.empty()) {
			struct dio_queue *q = idle_queues.back();
			idle_queues.pop_back();
			return q;
		}
	}
	return dio_queue_create(vol, 64);
}

void Mount::give_queue(struct dio_queue *q)
{
	std::lock_guard<std::mutex> g(q_mu);
	idle_queues.push_back(q);
}

IOStatus mount_get(const std::string &path, const struct dio_mount_opts *opts,
                   std::shared_ptr<Mount> *out)
{
	if (path.empty() || path[0] != '/')
		return IOStatus::InvalidArgument("libdio: the volume's path must be absolute", path);
	std::string key = canonical(path);
	std::lock_guard<std::mutex> g(registry_mu);
	if (!registry) {
		registry = new std::map<std::string, std::weak_ptr<Mount>>;
		std::atexit(at_exit);
	}
	auto it = registry->find(key);
	if (it != registry->end()) {
		if ((*out = it->second.lock()))
			return IOStatus::OK();
	}
	auto m = std::make_shared<Mount>();
	m->path = key;
	m->vol = dio_mount(key.c_str(), opts);
	if (!m->vol) {
		int err = errno;
		if (err == EBUSY)
			return IOStatus::Busy("libdio: volume mounted by another process", key);
		if (err == EINVAL || err == EUCLEAN)
			return IOStatus::InvalidArgument("libdio: not a usable libdio volume: " +
			                                 std::string(strerror(err)), key);
		return errno_status("mount " + key, err);
	}
	m->rdonly = opts && (opts->flags & DIO_MOUNT_RDONLY);
	if (!m->rdonly)
		m->stage = Stage::attach(m->vol, key);
	(*registry)[key] = m;
	*out = std::move(m);
	return IOStatus::OK();
}

size_t required_alignment(const struct dio_info &info)
{
	return info.mem_align > info.offset_align ? info.mem_align : info.offset_align;
}

} // namespace drf
