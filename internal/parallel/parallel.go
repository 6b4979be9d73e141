// Package parallel runs independent pieces of work at once and reports
// their errors in a fixed order, so that what a user sees does not depend
// on which request came back first. It does no I/O of its own.
package parallel

import "sync"

// All runs every f at once, waits for all, and returns the first non-nil
// error in the order the functions were given.
func All(fs ...func() error) error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Each runs f(0) ... f(n-1) as All does.
func Each(n int, f func(i int) error) error {
	fs := make([]func() error, n)
	for i := range fs {
		fs[i] = func() error { return f(i) }
	}
	return All(fs...)
}
