/*
 * The stage: appends to buffered files held in shared memory until a
 * block fills, so that RocksDB's write-ahead log costs what it costs on
 * a kernel file system.
 *
 * Why.  RocksDB appends each write's log record (a hundred bytes or so)
 * and calls Flush, and its rule is that a write survives the death of
 * the process once it returns, synced or not (WriteOptions::sync).  On
 * a kernel file system the record goes to the page cache.  libdio has
 * none: a write returns when the device has the data, so each record
 * would be a device write of its block, tens of microseconds, where
 * ext4 takes one.
 *
 * What.  Each buffered writable file (the WAL, the MANIFEST, the info
 * LOG; not direct ones, whose writes are whole blocks already) gets a
 * slot here: a ring of CAP bytes in POSIX shared memory, holding the
 * file's bytes [start, end) at ring offset (file offset % CAP).  An
 * append at end is copied in and end published with a release store,
 * so a process killed mid-append leaves it whole or absent; the bytes
 * before the last whole block go to the device, zero-copy from the
 * ring, when the ring would overflow; everything goes at Sync, Close,
 * Truncate, any write elsewhere, and before a read that reaches the
 * staged bytes.  The shared memory outlives the process, as the page
 * cache does, and not a reboot, as the page cache does not either: what
 * a power loss takes (bytes not synced) is what RocksDB allows.
 *
 * After a kill.  The next mount by this library (mount.cc, before any
 * FileSystem of the volume exists) writes every slot's bytes to its
 * file, if the slot still describes it: the name has the slot's file id
 * (ids are never reused in a volume) and a size in [start, end] (its
 * bytes before start are on the device, those from start on are not
 * all there: a ring written out whose start was not yet stored is
 * written again, the same bytes), or the size its writer extended it
 * to ahead of its appends (file.cc: then it is cut back to end).  Anything else is a slot of a
 * volume since remade or changed by other programs, and is dropped.
 * Until then other programs (dio(1), dio-fuse) see the files without
 * their staged bytes: RocksDB is their only reader that matters.
 *
 * The segment is named after the volume's device and inode, like
 * libdio's own process-death log; it is removed at a clean unmount.
 */
#include "drf.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace drf {

/* A slot's header in the segment.  start and end are atomics: a kill
   between a store and the next leaves either value consistent. */
struct SlotHdr {
	std::atomic<uint64_t> start;
	std::atomic<uint64_t> end;
	std::atomic<uint64_t> file_id;   /* 0: free */
	std::atomic<uint64_t> ahead;     /* the size the writer extended the file to (0: none) */
	uint32_t name_len;
	char name[DIO_NAME_MAX + 1];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the stage's counters live in shared memory: they must be lock-free");

namespace {

constexpr uint32_t MAGIC = 0x53465244;   /* "DRFS" */
constexpr uint32_t VERSION = 2;

struct SegHdr {
	uint32_t magic, version, nslots, cap;
};

size_t hdr_bytes(unsigned nslots)
{
	size_t n = sizeof(SegHdr) + nslots * sizeof(SlotHdr);
	return (n + 4095) / 4096 * 4096;
}

std::string segment_name(const std::string &path)
{
	struct stat st;
	if (stat(path.c_str(), &st) != 0)
		return "";
	unsigned long long dev = S_ISBLK(st.st_mode) ? (unsigned long long)st.st_rdev
	                                             : (unsigned long long)st.st_dev;
	unsigned long long ino = S_ISBLK(st.st_mode) ? 0ull : (unsigned long long)st.st_ino;
	char b[96];
	snprintf(b, sizeof(b), "/libdio-rocksdb-%d-%llx-%llx", (int)getuid(), dev, ino);
	return b;
}

} // namespace

Stage::~Stage()
{
	bool idle = true;
	for (unsigned i = 0; i < nslots_; i++) {
		quiesce(&slots_[i]);
		idle = idle && slots_[i].hdr->file_id.load() == 0;
	}
	munmap(base_, bytes_);
	if (idle)
		shm_unlink(name_.c_str());   /* nothing staged: nothing to leave */
}

/* Write slot s's bytes to its file, if it still describes it. */
void Stage::replay(struct dio_vol *vol, SlotHdr *h, const char *ring)
{
	uint64_t id = h->file_id.load(), start = h->start.load(), end = h->end.load();
	uint64_t ahead = h->ahead.load();
	std::string name(h->name, h->name_len < sizeof(h->name) ? h->name_len : 0);
	struct dio_stat st;
	if (name.empty() || end < start || end - start > cap_ ||
	    dio_stat(vol, name.c_str(), &st) != 0 || st.id != id ||
	    ((st.size < start || st.size > end) && (st.size != ahead || ahead < end)))
		return;
	struct dio_file *f = dio_open(vol, name.c_str(), O_RDWR);
	if (!f)
		return;
	uint64_t at = start;
	while (at < end) {
		uint64_t in_ring = at % cap_;
		uint64_t n = std::min<uint64_t>(end - at, cap_ - in_ring);
		if (dio_pwrite(f, ring + in_ring, (size_t)n, (off_t)at) != (ssize_t)n)
			break;
		at += n;
	}
	/* the zeros written ahead of the appends go: the file ends where
	   its writer's last append did */
	if (at == end && st.size > end)
		dio_ftruncate(f, (off_t)end);
	dio_close(f);
}

std::unique_ptr<Stage> Stage::attach(struct dio_vol *vol, const std::string &path)
{
	std::string name = segment_name(path);
	if (name.empty())
		return nullptr;
	int fd = shm_open(name.c_str(), O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		return nullptr;
	std::unique_ptr<Stage> s(new Stage);
	s->vol_ = vol;
	s->name_ = name;
	s->nslots_ = NSLOTS;
	s->cap_ = CAP;
	s->bytes_ = hdr_bytes(NSLOTS) + (size_t)NSLOTS * CAP;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 &&
	          (st.st_size == (off_t)s->bytes_ || ftruncate(fd, (off_t)s->bytes_) == 0);
	void *p = ok ? mmap(nullptr, s->bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd);
	if (p == MAP_FAILED)
		return nullptr;
	s->base_ = static_cast<char *>(p);
	SegHdr *seg = reinterpret_cast<SegHdr *>(s->base_);
	SlotHdr *hdrs = reinterpret_cast<SlotHdr *>(s->base_ + sizeof(SegHdr));
	char *rings = s->base_ + hdr_bytes(NSLOTS);
	bool ours = seg->magic == MAGIC && seg->version == VERSION && seg->nslots == NSLOTS &&
	            seg->cap == CAP && st.st_size == (off_t)s->bytes_;
	s->slots_.reset(new Slot[NSLOTS]);
	for (unsigned i = 0; i < NSLOTS; i++) {
		SlotHdr *h = &hdrs[i];
		if (ours && h->file_id.load() != 0)
			s->replay(vol, h, rings + (size_t)i * CAP);
		h->file_id.store(0);
		h->ahead.store(0);
		h->start.store(0);
		h->end.store(0);
		s->slots_[i].hdr = h;
		s->slots_[i].ring = rings + (size_t)i * CAP;
	}
	seg->nslots = NSLOTS;
	seg->cap = CAP;
	seg->version = VERSION;
	std::atomic_thread_fence(std::memory_order_release);
	seg->magic = MAGIC;
	return s;
}

Slot *Stage::take(struct dio_file *f, uint64_t id, const std::string &name, uint64_t at)
{
	std::lock_guard<std::mutex> g(mu_);
	for (unsigned i = 0; i < nslots_; i++) {
		Slot *s = &slots_[i];
		if (s->f)
			continue;
		s->f = f;
		SlotHdr *h = s->hdr;
		h->start.store(at);
		h->end.store(at);
		h->ahead.store(0);
		rename(s, name);
		h->file_id.store(id, std::memory_order_release);
		return s;
	}
	return nullptr;
}

void Stage::give(Slot *s)
{
	quiesce(s);
	std::lock_guard<std::mutex> g(mu_);
	s->hdr->file_id.store(0, std::memory_order_release);
	s->f = nullptr;
}

/* The name the slot's bytes are replayed to: its length stored last, so
   a kill in between leaves a name that is not the file's (dropped). */
void Stage::rename(Slot *s, const std::string &name)
{
	SlotHdr *h = s->hdr;
	h->name_len = 0;
	std::atomic_signal_fence(std::memory_order_seq_cst);
	memcpy(h->name, name.data(), std::min(name.size(), sizeof(h->name) - 1));
	std::atomic_signal_fence(std::memory_order_seq_cst);
	h->name_len = (uint32_t)std::min(name.size(), sizeof(h->name) - 1);
}

/* The ring's bytes [start, upto) to the device (s->mu held). */
int Stage::write_out(Slot *s, uint64_t upto)
{
	int err = reap(s);
	if (err)
		return err;
	SlotHdr *h = s->hdr;
	uint64_t start = h->start.load(std::memory_order_relaxed);
	if (upto <= start)
		return 0;
	struct iovec iov[2];
	uint64_t in_ring = start % cap_;
	uint64_t first = std::min<uint64_t>(upto - start, cap_ - in_ring);
	iov[0].iov_base = s->ring + in_ring;
	iov[0].iov_len = (size_t)first;
	iov[1].iov_base = s->ring;
	iov[1].iov_len = (size_t)(upto - start - first);
	uint64_t want = upto - start;
	ssize_t w = dio_pwritev(s->f, iov, iov[1].iov_len ? 2 : 1, (off_t)start);
	if (w < 0)
		return errno;
	if ((uint64_t)w != want)
		return EIO;
	h->start.store(upto, std::memory_order_release);
	return 0;
}

uint64_t Stage::end(const Slot *s)
{
	return s->hdr->end.load(std::memory_order_acquire);
}

void Stage::set_ahead(Slot *s, uint64_t size)
{
	s->hdr->ahead.store(size, std::memory_order_release);
}

/* start first: a kill in between leaves end < start, a slot replay
   drops, never one that claims ring bytes the write did not put there */
void Stage::skip(Slot *s, uint64_t at)
{
	s->hdr->start.store(at, std::memory_order_release);
	s->hdr->end.store(at, std::memory_order_release);
}

int Stage::drain(Slot *s)
{
	int err = reap(s);
	if (err)
		return err;
	return write_out(s, s->hdr->end.load(std::memory_order_relaxed));
}

/*
 * The write-out in flight: the whole blocks of the ring's first half,
 * started on the slot's queue when appends pass half the ring, so that
 * the appender goes on copying into the other half instead of waiting
 * for the device, as a kernel's writeback runs beside its writers.  Its
 * bytes stay in the ring until it completes (start moves then), so a
 * kill meanwhile replays them.  Its error is the next call's that needs
 * it done: an append short of room, a drain.
 */
void Stage::start_write_out(Slot *s, uint64_t upto)
{
	SlotHdr *h = s->hdr;
	uint64_t start = h->start.load(std::memory_order_relaxed);
	if (s->inflight || upto <= start)
		return;
	if (!s->q && !(s->q = dio_queue_create(vol_, 4)))
		return;                  /* then written when room runs out */
	uint64_t in_ring = start % cap_;
	uint64_t first = std::min<uint64_t>(upto - start, cap_ - in_ring);
	s->iov[0].iov_base = s->ring + in_ring;
	s->iov[0].iov_len = (size_t)first;
	s->iov[1].iov_base = s->ring;
	s->iov[1].iov_len = (size_t)(upto - start - first);
	struct dio_req r = {};
	r.op = DIO_OP_WRITEV;
	r.file = s->f;
	r.iov = s->iov;
	r.iovcnt = s->iov[1].iov_len ? 2 : 1;
	r.offset = (off_t)start;
	if (dio_submit(s->q, &r, 1) == 1) {
		s->inflight = true;
		s->inflight_upto = upto;
	}
}

/* Wait for the write-out in flight, if any; 0 or its errno. */
int Stage::reap(Slot *s)
{
	if (!s->inflight)
		return 0;
	struct dio_cqe cqe;
	int n;
	do
		n = dio_reap(s->q, &cqe, 1, 1, -1);
	while (n < 0 && errno == EINTR);
	s->inflight = false;
	SlotHdr *h = s->hdr;
	uint64_t want = s->inflight_upto - h->start.load(std::memory_order_relaxed);
	if (n != 1)
		return n < 0 ? errno : EIO;
	if (cqe.res < 0)
		return (int)-cqe.res;
	if ((uint64_t)cqe.res != want)
		return EIO;
	h->start.store(s->inflight_upto, std::memory_order_release);
	return 0;
}

/* Copy data in at end; first, if it would not fit, the write-out in
   flight is waited for, and if that is not room enough the whole blocks
   before end go out now (the partial last one stays: the next appends
   finish it).  Past half the ring, the next write-out starts.  0, or
   the errno of a device write. */
int Stage::append(Slot *s, const char *data, size_t n, uint32_t block)
{
	SlotHdr *h = s->hdr;
	uint64_t end = h->end.load(std::memory_order_relaxed);
	if (end + n - h->start.load(std::memory_order_relaxed) > cap_) {
		int err = reap(s);
		if (!err && end + n - h->start.load(std::memory_order_relaxed) > cap_)
			err = write_out(s, end / block * block);
		if (err)
			return err;
	}
	size_t in_ring = (size_t)(end % cap_);
	size_t first = std::min(n, cap_ - in_ring);
	memcpy(s->ring + in_ring, data, first);
	memcpy(s->ring, data + first, n - first);
	h->end.store(end + n, std::memory_order_release);   /* the append, whole */
	if (end + n - h->start.load(std::memory_order_relaxed) >= cap_ / 2)
		start_write_out(s, (end + n) / block * block);
	return 0;
}

/* A slot let go: nothing of it in flight, no queue kept. */
void Stage::quiesce(Slot *s)
{
	reap(s);
	if (s->q)
		dio_queue_destroy(s->q);
	s->q = nullptr;
}

void Stage::abandon(Slot *s)
{
	quiesce(s);
	std::lock_guard<std::mutex> g(mu_);
	s->f = nullptr;
}

bool Stage::holds(const Slot *s, uint64_t id)
{
	return s->f && s->hdr->file_id.load(std::memory_order_relaxed) == id;
}

Slot *Stage::find(uint64_t id)
{
	std::lock_guard<std::mutex> g(mu_);
	for (unsigned i = 0; i < nslots_; i++)
		if (slots_[i].f && slots_[i].hdr->file_id.load(std::memory_order_relaxed) == id)
			return &slots_[i];
	return nullptr;
}

} // namespace drf
