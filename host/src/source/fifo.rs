//! FIFO queues: SQS hands out a message group's messages in send order and no more of a group
//! while any of it is in flight, so a group's order holds from receive to commit as long as
//! masq (1) keeps the messages of one receive together and in order (the pipeline never splits
//! a receive across batches, and a batch is decided and written in order), (2) deletes only
//! after the commit, and (3) never lets a later message of a group go on while an earlier one
//! of the same receive goes back to the queue. This module holds rule (3) and the name test.

/// A FIFO queue's name ends in `.fifo` (SQS requires it), and so does its URL.
pub fn is_fifo(queue_url: &str) -> bool {
    queue_url.trim_end_matches('/').ends_with(".fifo")
}

/// Marks as held back every message that follows, in the same receive, a held-back message of
/// its group: it must wait for the earlier one, which goes back to the queue. `groups[i]` is
/// message i's `MessageGroupId` (in receive order, which within a group is send order).
pub fn hold_back_followers(groups: &[Option<&str>], held_back: &mut [bool]) {
    debug_assert_eq!(groups.len(), held_back.len());
    for i in 0..groups.len() {
        if !held_back[i] {
            continue;
        }
        let Some(group) = groups[i] else { continue };
        for j in i + 1..groups.len() {
            if groups[j] == Some(group) {
                held_back[j] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_told_from_the_url() {
        assert!(is_fifo(
            "http://sqs.us-east-1.localhost:4566/000000000000/orders.fifo"
        ));
        assert!(is_fifo(
            "https://sqs.eu-west-1.amazonaws.com/1/orders.fifo/"
        ));
        assert!(!is_fifo("http://localhost:4566/000000000000/orders"));
        assert!(!is_fifo("http://localhost:4566/000000000000/fifo-orders"));
    }

    #[test]
    fn later_messages_of_a_held_back_group_wait_and_other_groups_go_on() {
        let groups = [Some("a"), Some("b"), Some("a"), Some("a"), Some("b"), None];
        let mut held = [false, false, true, false, false, true];
        hold_back_followers(&groups, &mut held);
        // a's second message goes back: a's third must wait for it; b and the
        // group-less message are untouched; a's first (earlier) goes on.
        assert_eq!(held, [false, false, true, true, false, true]);
    }
}
