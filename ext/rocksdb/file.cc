/*
 * The files RocksDB opens, each one libdio handle.  Every call goes
 * straight to the volume: libdio has no cache to fill or flush, so Flush
 * and RangeSync have nothing to do, InvalidateCache succeeds, and a read
 * or write of any alignment is served (misaligned ones through libdio's
 * bounce buffers, which is what RocksDB's buffered files are: its WAL,
 * MANIFEST and info LOG).  With use_direct_reads or
 * use_direct_io_for_flush_and_compaction RocksDB aligns its buffers and
 * offsets to GetRequiredBufferAlignment, and libdio moves them with no
 * copy.
 *
 * MultiRead and ReadAsync go on dio_queue(3)s lent by the mount, one
 * call at a time (a queue belongs to one thread at a time).
 */
#include "drf.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>

namespace drf {

using rocksdb::FileOptions;
using rocksdb::FSReadRequest;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::Slice;

namespace {

/* A handle and what every kind of file needs of it. */
class Handle {
public:
	Handle(std::shared_ptr<Mount> m, std::string name, struct dio_file *f)
		: m_(std::move(m)), name_(std::move(name)), f_(f)
	{
		if (dio_info(f_, &info_) != 0)
			info_.mem_align = info_.offset_align = 4096;
		struct dio_stat st;
		id_ = dio_fstat(f_, &st) == 0 ? st.id : 0;
	}
	Handle(Handle &&o) noexcept
		: m_(std::move(o.m_)), name_(std::move(o.name_)), f_(o.f_), info_(o.info_), id_(o.id_)
	{
		o.f_ = nullptr;
	}
	Handle(const Handle &) = delete;
	~Handle() { close(); }
	IOStatus close()
	{
		if (!f_)
			return IOStatus::OK();
		int rc = dio_close(f_);
		f_ = nullptr;
		return rc == 0 ? IOStatus::OK() : errno_status("close " + name_, errno);
	}
	/* n bytes at off into buf: fewer only at the end of the file, which
	   a writer of this process may have in the stage: then it goes to
	   the device and the read goes on */
	IOStatus read(uint64_t off, size_t n, Slice *result, char *buf) const
	{
		IOStatus s = read_device(off, n, result, buf);
		if (s.ok() && result->size() < n && drain_writer())
			s = read_device(off, n, result, buf);
		return s;
	}
	bool drain_writer() const
	{
		Slot *w = m_->stage && id_ ? m_->stage->find(id_) : nullptr;
		if (!w)
			return false;
		std::lock_guard<std::mutex> g(w->mu);
		return Stage::holds(w, id_) && w->f != f_ && m_->stage->drain(w) == 0;
	}
	IOStatus read_device(uint64_t off, size_t n, Slice *result, char *buf) const
	{
		size_t done = 0;
		while (done < n) {
			ssize_t r = dio_pread(f_, buf + done, n - done, (off_t)(off + done));
			if (r < 0) {
				*result = Slice(buf, 0);
				return errno_status("read " + name_, errno);
			}
			if (r == 0)
				break;
			done += (size_t)r;
		}
		*result = Slice(buf, done);
		return IOStatus::OK();
	}
	IOStatus write(uint64_t off, const Slice &data)
	{
		size_t done = 0;
		while (done < data.size()) {
			ssize_t r = dio_pwrite(f_, data.data() + done, data.size() - done, (off_t)(off + done));
			if (r < 0)
				return errno_status("write " + name_, errno);
			done += (size_t)r;
		}
		return IOStatus::OK();
	}
	IOStatus sync(bool metadata)
	{
		int rc = metadata ? dio_fsync(f_) : dio_fdatasync(f_);
		return rc == 0 ? IOStatus::OK() : errno_status("sync " + name_, errno);
	}
	size_t alignment() const { return required_alignment(info_); }

	std::shared_ptr<Mount> m_;
	std::string name_;
	struct dio_file *f_;
	struct dio_info info_ {};
	uint64_t id_ = 0;
};

class SequentialFile : public rocksdb::FSSequentialFile {
public:
	SequentialFile(Handle h, bool direct) : h_(std::move(h)), direct_(direct) {}
	IOStatus Read(size_t n, const IOOptions &, Slice *result, char *scratch,
	              IODebugContext *) override
	{
		IOStatus s = h_.read(pos_, n, result, scratch);
		pos_ += result->size();
		return s;
	}
	IOStatus PositionedRead(uint64_t off, size_t n, const IOOptions &, Slice *result,
	                        char *scratch, IODebugContext *) override
	{
		return h_.read(off, n, result, scratch);
	}
	IOStatus Skip(uint64_t n) override
	{
		pos_ += n;
		return IOStatus::OK();
	}
	bool use_direct_io() const override { return direct_; }
	size_t GetRequiredBufferAlignment() const override { return h_.alignment(); }
	IOStatus InvalidateCache(size_t, size_t) override { return IOStatus::OK(); }

private:
	Handle h_;
	bool direct_;
	uint64_t pos_ = 0;
};

/* One ReadAsync in flight: the request, its callback, the queue it is on. */
struct AsyncRead {
	Mount *m;
	struct dio_queue *q;
	FSReadRequest req;
	std::function<void(const FSReadRequest &, void *)> cb;
	void *cb_arg;
	std::string name;
	bool done = false;
};

/* Wait for r's completion; call its callback unless the read was aborted. */
void async_finish(AsyncRead *r, bool call_back)
{
	if (r->done)
		return;
	struct dio_cqe cqe;
	int n;
	do
		n = dio_reap(r->q, &cqe, 1, 1, -1);
	while (n < 0 && errno == EINTR);
	if (n != 1) {
		r->req.status = errno_status("read " + r->name, n < 0 ? errno : EIO);
		r->req.result = Slice(r->req.scratch, 0);
	} else if (cqe.res < 0) {
		r->req.status = errno_status("read " + r->name, (int)-cqe.res);
		r->req.result = Slice(r->req.scratch, 0);
	} else {
		r->req.status = IOStatus::OK();
		r->req.result = Slice(r->req.scratch, (size_t)cqe.res);
	}
	r->m->give_queue(r->q);
	r->q = nullptr;
	r->done = true;
	if (call_back)
		r->cb(r->req, r->cb_arg);
}

class RandomAccessFile : public rocksdb::FSRandomAccessFile {
public:
	RandomAccessFile(Handle h, bool direct) : h_(std::move(h)), direct_(direct) {}
	IOStatus Read(uint64_t off, size_t n, const IOOptions &, Slice *result, char *scratch,
	              IODebugContext *) const override
	{
		return h_.read(off, n, result, scratch);
	}
	IOStatus MultiRead(FSReadRequest *reqs, size_t nr, const IOOptions &opts,
	                   IODebugContext *dbg) override;
	IOStatus ReadAsync(FSReadRequest &req, const IOOptions &opts,
	                   std::function<void(const FSReadRequest &, void *)> cb, void *cb_arg,
	                   void **io_handle, rocksdb::IOHandleDeleter *del_fn,
	                   IODebugContext *dbg) override;
	bool use_direct_io() const override { return direct_; }
	size_t GetRequiredBufferAlignment() const override { return h_.alignment(); }
	IOStatus InvalidateCache(size_t, size_t) override { return IOStatus::OK(); }

private:
	Handle h_;
	bool direct_;
};

/* Up to a queue's worth in flight at once; each request's status is its
   own (RocksDB reads them one by one), the call's OK unless no queue
   could be had and a plain read failed too. */
IOStatus RandomAccessFile::MultiRead(FSReadRequest *reqs, size_t nr, const IOOptions &opts,
                                     IODebugContext *dbg)
{
	struct dio_queue *q = nr > 1 ? h_.m_->take_queue() : nullptr;
	if (!q) {
		for (size_t i = 0; i < nr; i++)
			reqs[i].status = Read(reqs[i].offset, reqs[i].len, opts, &reqs[i].result,
			                      reqs[i].scratch, dbg);
		return IOStatus::OK();
	}
	constexpr size_t BATCH = 32;
	struct dio_req dr[BATCH];
	struct dio_cqe cqe[BATCH];
	for (size_t base = 0; base < nr; base += BATCH) {
		unsigned n = (unsigned)(nr - base < BATCH ? nr - base : BATCH);
		for (unsigned i = 0; i < n; i++) {
			FSReadRequest &r = reqs[base + i];
			dr[i] = {};
			dr[i].op = DIO_OP_READ;
			dr[i].file = h_.f_;
			dr[i].buf = r.scratch;
			dr[i].len = r.len;
			dr[i].offset = (off_t)r.offset;
			dr[i].user_data = base + i;
			r.result = Slice(r.scratch, 0);
			r.status = IOStatus::OK();
		}
		unsigned sent = 0;
		while (sent < n) {
			int s = dio_submit(q, dr + sent, n - sent);
			if (s < 0 && errno == EINTR)
				continue;
			if (s <= 0) {
				/* what the queue did not take is read here */
				for (unsigned i = sent; i < n; i++) {
					FSReadRequest &r = reqs[base + i];
					r.status = Read(r.offset, r.len, opts, &r.result, r.scratch, dbg);
				}
				break;
			}
			sent += (unsigned)s;
		}
		unsigned got = 0;
		while (got < sent) {
			int g = dio_reap(q, cqe, 1, sent - got, -1);
			if (g < 0) {
				if (errno == EINTR)
					continue;
				/* a queue that cannot be reaped cannot be lent again */
				int err = errno;
				dio_queue_destroy(q);
				for (size_t i = base; i < nr; i++)
					if (reqs[i].status.ok() && reqs[i].result.size() == 0)
						reqs[i].status = errno_status("read " + h_.name_, err);
				return IOStatus::OK();
			}
			for (int i = 0; i < g; i++) {
				FSReadRequest &r = reqs[cqe[i].user_data];
				if (cqe[i].res < 0)
					r.status = errno_status("read " + h_.name_, (int)-cqe[i].res);
				else
					r.result = Slice(r.scratch, (size_t)cqe[i].res);
			}
			got += (unsigned)g;
		}
	}
	h_.m_->give_queue(q);
	return IOStatus::OK();
}

IOStatus RandomAccessFile::ReadAsync(FSReadRequest &req, const IOOptions &opts,
                                     std::function<void(const FSReadRequest &, void *)> cb,
                                     void *cb_arg, void **io_handle,
                                     rocksdb::IOHandleDeleter *del_fn, IODebugContext *dbg)
{
	struct dio_queue *q = h_.m_->take_queue();
	struct dio_req dr = {};
	dr.op = DIO_OP_READ;
	dr.file = h_.f_;
	dr.buf = req.scratch;
	dr.len = req.len;
	dr.offset = (off_t)req.offset;
	if (!q || dio_submit(q, &dr, 1) != 1) {
		if (q)
			h_.m_->give_queue(q);
		/* served now, as the default ReadAsync does */
		return FSRandomAccessFile::ReadAsync(req, opts, cb, cb_arg, io_handle, del_fn, dbg);
	}
	AsyncRead *r = new AsyncRead{h_.m_.get(), q, req, std::move(cb), cb_arg, h_.name_};
	*io_handle = r;
	*del_fn = [](void *p) {
		AsyncRead *a = static_cast<AsyncRead *>(p);
		async_finish(a, false);   /* the buffer is RocksDB's: wait before letting go */
		delete a;
	};
	return IOStatus::OK();
}

/* A buffered file's appends go through its slot of the stage
   (stage.cc) while it has one: appends at the end, of less than a
   quarter of the ring each.  Anything else (a direct file, a big
   append, a write elsewhere, a truncate) is written through, after the
   slot's bytes; a file that is not only appended to gives its slot
   back.  RocksDB appends from one thread, but may Sync from another
   (IsSyncThreadSafe): the slot's mutex orders them. */
class WritableFile : public rocksdb::FSWritableFile {
public:
	WritableFile(Handle h, const FileOptions &fo, uint64_t size, bool stage)
		: FSWritableFile(fo), h_(std::move(h)), direct_(fo.use_direct_writes), size_(size)
	{
		if (stage && !direct_ && h_.m_->stage && h_.id_)
			slot_ = h_.m_->stage->take(h_.f_, h_.id_, h_.name_, size);
	}
	~WritableFile() override
	{
		if (h_.f_)
			Close(IOOptions(), nullptr).PermitUncheckedError();
	}
	IOStatus Append(const Slice &data, const IOOptions &, IODebugContext *) override
	{
		return write_at(size_, data);
	}
	IOStatus PositionedAppend(const Slice &data, uint64_t off, const IOOptions &,
	                          IODebugContext *) override
	{
		return write_at(off, data);
	}
	IOStatus Truncate(uint64_t size, const IOOptions &, IODebugContext *) override
	{
		IOStatus s = unstage();
		if (!s.ok())
			return s;
		if (dio_ftruncate(h_.f_, (off_t)size) != 0)
			return errno_status("truncate " + h_.name_, errno);
		size_ = size;
		return IOStatus::OK();
	}
	IOStatus Close(const IOOptions &, IODebugContext *) override;
	IOStatus Flush(const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }
	IOStatus Sync(const IOOptions &, IODebugContext *) override { return sync(false); }
	IOStatus Fsync(const IOOptions &, IODebugContext *) override { return sync(true); }
	bool IsSyncThreadSafe() const override { return true; }
	bool use_direct_io() const override { return direct_; }
	size_t GetRequiredBufferAlignment() const override { return h_.alignment(); }
	uint64_t GetFileSize(const IOOptions &, IODebugContext *) override { return size_; }
	IOStatus InvalidateCache(size_t, size_t) override { return IOStatus::OK(); }
	IOStatus Allocate(uint64_t off, uint64_t len, const IOOptions &, IODebugContext *) override
	{
		if (dio_fallocate(h_.f_, DIO_FALLOC_KEEP_SIZE, (off_t)off, (off_t)len) != 0)
			return errno_status("allocate " + h_.name_, errno);
		return IOStatus::OK();
	}

private:
	IOStatus write_at(uint64_t off, const Slice &data);
	IOStatus sync(bool metadata)
	{
		if (slot_) {
			std::lock_guard<std::mutex> g(slot_->mu);
			int err = h_.m_->stage->drain(slot_);
			if (!err)
				err = extend_ahead();
			if (err)
				return errno_status("write " + h_.name_, err);
		}
		return h_.sync(metadata);
	}
	int extend_ahead();
	/* the slot's bytes to the device, the zeros past them cut, and the
	   slot given back; at the close (closing), given up even if its
	   bytes could not be written */
	IOStatus unstage(bool closing = false)
	{
		if (!slot_)
			return IOStatus::OK();
		std::lock_guard<std::mutex> g(slot_->mu);
		int err = h_.m_->stage->drain(slot_);
		struct dio_stat st;
		if (!err && extended_ && dio_fstat(h_.f_, &st) == 0 && st.size > size_ &&
		    dio_ftruncate(h_.f_, (off_t)size_) != 0)
			err = errno;
		if (err && !closing)
			return errno_status("write " + h_.name_, err);
		if (err)
			h_.m_->stage->abandon(slot_);
		else
			h_.m_->stage->give(slot_);
		slot_ = nullptr;
		return err ? errno_status("write " + h_.name_, err) : IOStatus::OK();
	}

	Handle h_;
	bool direct_;
	uint64_t size_;      /* what RocksDB has appended: the slot's end */
	Slot *slot_ = nullptr;
	bool extended_ = false;   /* zeros were written ahead of the appends */
};

/*
 * A synced log's appends without a journal commit each.  An append
 * that grows the file changes its size, and its sync commits that to
 * the journal: a journal write more per synced record than on a file
 * whose size already covers it.  So a file that is synced while it
 * grows is extended ahead of its appends, 1 MiB of zeros at a time
 * (written: blocks merely allocated would each need their conversion
 * committed), and its syncs in between write the records and flush:
 * one commit per MiB.  RocksDB reads a log's zeros as the end of its
 * records (its record type 0 is kept for preallocated files), but what
 * RocksDB asks for is the appended size, so that is what the writer,
 * FileSystem::GetFileSize and the closed file say: the zeros are cut
 * at the close, or after a kill by the replay of the slot, which
 * records the size the file was extended to before it is (s->mu held).
 */
int WritableFile::extend_ahead()
{
	constexpr uint64_t AHEAD = 1 << 20, SLACK = 64 << 10;
	static char *zeros = [] {
		char *z = static_cast<char *>(aligned_alloc(4096, AHEAD));
		if (z)
			memset(z, 0, AHEAD);
		return z;
	}();
	struct dio_stat st;
	if (!zeros || dio_fstat(h_.f_, &st) != 0)
		return 0;           /* no extension: the syncs commit as before */
	if (st.size >= size_ + SLACK)
		return 0;
	uint64_t to = (size_ + SLACK) / AHEAD * AHEAD + AHEAD;
	h_.m_->stage->set_ahead(slot_, to);
	extended_ = true;
	ssize_t w = dio_pwrite(h_.f_, zeros, (size_t)(to - st.size), (off_t)st.size);
	if (w == (ssize_t)(to - st.size))
		return 0;
	return w < 0 ? errno : EIO;
}

IOStatus WritableFile::write_at(uint64_t off, const Slice &data)
{
	if (slot_ && off == size_ && data.size() <= Stage::CAP / 4) {
		std::lock_guard<std::mutex> g(slot_->mu);
		int err = h_.m_->stage->append(slot_, data.data(), data.size(), h_.info_.block_size);
		if (err)
			return errno_status("write " + h_.name_, err);
		size_ += data.size();
		return IOStatus::OK();
	}
	if (slot_ && off == size_) {
		/* a big append: what is staged, then it, straight */
		std::lock_guard<std::mutex> g(slot_->mu);
		int err = h_.m_->stage->drain(slot_);
		if (err)
			return errno_status("write " + h_.name_, err);
		IOStatus s = h_.write(off, data);
		if (s.ok()) {
			h_.m_->stage->skip(slot_, off + data.size());
			size_ = off + data.size();
		}
		return s;
	}
	IOStatus s = unstage();
	if (s.ok())
		s = h_.write(off, data);
	if (s.ok())
		size_ = off + data.size();
	return s;
}

/* Blocks Allocate took past the end are given back, as RocksDB's POSIX
   file does: a closed file holds what its size needs. */
IOStatus WritableFile::Close(const IOOptions &, IODebugContext *)
{
	if (!h_.f_)
		return IOStatus::OK();
	IOStatus s = unstage(true);
	struct dio_stat st;
	if (s.ok() && dio_fstat(h_.f_, &st) == 0 && st.size == size_ &&
	    st.allocated > (size_ + st.block_size - 1) / st.block_size * st.block_size &&
	    dio_ftruncate(h_.f_, (off_t)size_) != 0)
		s = errno_status("truncate " + h_.name_, errno);
	IOStatus c = h_.close();
	return s.ok() ? c : s;
}

class RandomRWFile : public rocksdb::FSRandomRWFile {
public:
	RandomRWFile(Handle h, bool direct) : h_(std::move(h)), direct_(direct) {}
	bool use_direct_io() const override { return direct_; }
	size_t GetRequiredBufferAlignment() const override { return h_.alignment(); }
	IOStatus Write(uint64_t off, const Slice &data, const IOOptions &, IODebugContext *) override
	{
		return h_.write(off, data);
	}
	IOStatus Read(uint64_t off, size_t n, const IOOptions &, Slice *result, char *scratch,
	              IODebugContext *) const override
	{
		return h_.read(off, n, result, scratch);
	}
	IOStatus Flush(const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }
	IOStatus Sync(const IOOptions &, IODebugContext *) override { return h_.sync(false); }
	IOStatus Fsync(const IOOptions &, IODebugContext *) override { return h_.sync(true); }
	IOStatus Close(const IOOptions &, IODebugContext *) override { return h_.close(); }

private:
	Handle h_;
	bool direct_;
};

/* The handle of name, opened with flags, or why not. */
IOStatus open_handle(const std::shared_ptr<Mount> &m, const std::string &name, int flags,
                     struct dio_file **out)
{
	*out = dio_open(m->vol, name.c_str(), flags);
	return *out ? IOStatus::OK() : errno_status("open " + name, errno);
}

} // namespace

IOStatus open_sequential(std::shared_ptr<Mount> m, const std::string &name, const FileOptions &fo,
                         std::unique_ptr<rocksdb::FSSequentialFile> *out)
{
	struct dio_file *f;
	IOStatus s = open_handle(m, name, O_RDONLY, &f);
	if (s.ok())
		out->reset(new SequentialFile(Handle(std::move(m), name, f), fo.use_direct_reads));
	return s;
}

IOStatus open_random(std::shared_ptr<Mount> m, const std::string &name, const FileOptions &fo,
                     std::unique_ptr<rocksdb::FSRandomAccessFile> *out)
{
	struct dio_file *f;
	IOStatus s = open_handle(m, name, O_RDONLY, &f);
	if (s.ok())
		out->reset(new RandomAccessFile(Handle(std::move(m), name, f), fo.use_direct_reads));
	return s;
}

IOStatus open_writable(std::shared_ptr<Mount> m, const std::string &name, const FileOptions &fo,
                       int flags, bool at_end, std::unique_ptr<rocksdb::FSWritableFile> *out)
{
	struct dio_file *f;
	IOStatus s = open_handle(m, name, O_RDWR | O_CREAT | flags, &f);
	if (!s.ok())
		return s;
	Handle h(std::move(m), name, f);
	struct dio_stat st;
	if (at_end && dio_fstat(f, &st) != 0)
		return errno_status("stat " + name, errno);
	/* a file written over from the start (a recycled log) is not
	   appended to: written through */
	struct dio_stat now;
	bool appends = dio_fstat(f, &now) == 0 && now.size == (at_end ? st.size : 0);
	out->reset(new WritableFile(std::move(h), fo, at_end ? st.size : 0, appends));
	return IOStatus::OK();
}

IOStatus open_random_rw(std::shared_ptr<Mount> m, const std::string &name, const FileOptions &fo,
                        std::unique_ptr<rocksdb::FSRandomRWFile> *out)
{
	struct dio_file *f;
	IOStatus s = open_handle(m, name, O_RDWR | O_CREAT, &f);
	if (s.ok())
		out->reset(new RandomRWFile(Handle(std::move(m), name, f),
		                            fo.use_direct_reads || fo.use_direct_writes));
	return s;
}

/* FileSystem::Poll for the handles ReadAsync gave: each waited for in
   turn (at least min_completions of them is all of them). */
IOStatus poll_async(std::vector<void *> &handles)
{
	for (void *p : handles)
		async_finish(static_cast<AsyncRead *>(p), true);
	return IOStatus::OK();
}

IOStatus abort_async(std::vector<void *> &handles)
{
	for (void *p : handles)
		async_finish(static_cast<AsyncRead *>(p), false);
	return IOStatus::OK();
}

} // namespace drf
