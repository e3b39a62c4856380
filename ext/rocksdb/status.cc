/*
 * errno to IOStatus, as RocksDB's POSIX file system maps it (RocksDB
 * decides by the code: NoSpace stops writes with a retryable background
 * error, PathNotFound is an absent file, not a failure).  A device error
 * is never Corruption: RocksDB would take the data for bad, not the
 * device for failing.
 */
#include "drf.h"

#include <cerrno>
#include <cstring>

namespace drf {

IOStatus errno_status(const std::string &context, int err)
{
	std::string why = std::strerror(err);
	switch (err) {
	case ENOSPC: {
		IOStatus s = IOStatus::NoSpace(context, why);
		s.SetRetryable(true);
		return s;
	}
	case ENOENT:
		return IOStatus::PathNotFound(context, why);
	case EINVAL:
	case ENAMETOOLONG:
		return IOStatus::InvalidArgument(context, why);
	case ENOTSUP:
		return IOStatus::NotSupported(context, why);
	default:
		return IOStatus::IOError(context, why);
	}
}

} // namespace drf
